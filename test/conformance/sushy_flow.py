#!/usr/bin/python3
"""Drives a Redfish service the way Ironic's redfish driver does, with Debian's python3-sushy.

Usage: sushy_flow.py PHASE BASE_URL USERNAME PASSWORD SYSTEM_ID CA_FILE [ISO_URL]

PHASE "inspect": login, what Ironic 21.4's `redfish` inspect interface reads and how it computes the node's
properties (ironic/drivers/modules/redfish/inspect.py, with the same sushy readers), plus Bios and SecureBoot.
PHASE "install": login, inventory, ForceOff, eject, insert ISO_URL, wait until Inserted, boot Cd once, On,
logout (the caller then checks that the VM booted from the CD). PHASE "power": login, the other power
actions, the boot override reading back Disabled after the one-time boot, eject, logout.

Prints one JSON document with what it observed; exits non-zero (with the reason on stderr) at the first
behaviour Ironic would not accept. The vitest suite test/conformance/sushy.test.ts runs it against the
sandbox and asserts on the JSON.
"""
import json
import sys
import time
import urllib.error
import urllib.request
import ssl

import sushy
from sushy import auth as sushy_auth

phase, base_url, username, password, system_id, ca_file = sys.argv[1:7]
iso_url = sys.argv[7] if len(sys.argv) > 7 else None
results = {"steps": []}


def step(name, **data):
    results["steps"].append(dict(name=name, **data))


def fail(message):
    results["error"] = message
    print(json.dumps(results, default=str))
    print(message, file=sys.stderr)
    sys.exit(1)


def wait_for_power(system, wanted, timeout=60):
    """Polls like Ironic's power-state sync: PoweringOn counts as on, PoweringOff as off."""
    started = time.monotonic()
    seen = []
    while time.monotonic() - started < timeout:
        system.refresh(force=True)
        state = system.power_state
        if not seen or seen[-1] != state.value:
            seen.append(state.value)
        if state == wanted:
            return round(time.monotonic() - started, 2), seen
        time.sleep(0.2)
    fail("power state %s not reached within %ss (seen %s)" % (wanted.value, timeout, seen))


session = sushy_auth.SessionAuth(username, password)
root = sushy.Sushy(base_url, verify=ca_file, auth=session)
results["redfish_version"] = root.redfish_version
results["uuid"] = root.uuid
step("login", session_uri=session.get_session_resource_id())
token = session.get_session_key()
if not token:
    fail("no X-Auth-Token after login")

systems = root.get_system_collection()
results["systems"] = sorted(systems.members_identities)
system = root.get_system("/redfish/v1/Systems/%s" % system_id)
results["system"] = {
    "identity": system.identity,
    "uuid": system.uuid,
    "power_state": system.power_state.value,
    "boot_mode": system.boot.mode.value if system.boot.mode else None,
    "macs": [nic.mac_address for nic in system.ethernet_interfaces.get_members()],
    "allowed_resets": sorted(v.value for v in system.get_allowed_reset_system_values()),
    "memory_gib": system.memory_summary.size_gib if system.memory_summary else None,
}
results["managers"] = sorted(root.get_manager_collection().members_identities)
results["chassis"] = sorted(root.get_chassis_collection().members_identities)

manager = system.managers[0]
cd = None
for media in manager.virtual_media.get_members():
    if "cd" in [t.value.lower() for t in media.media_types]:
        cd = media
if cd is None:
    fail("no CD virtual media device on the manager of %s" % system_id)
results["virtual_media"] = cd.path

if phase == "install":
    # The Ironic redfish-virtualmedia deploy: off, eject, insert, boot once from CD, on.
    system.reset_system(sushy.ResetType.FORCE_OFF)
    seconds, seen = wait_for_power(system, sushy.PowerState.OFF)
    step("ForceOff", seconds=seconds, seen=seen)
    if seconds > 10:
        fail("ForceOff took %ss" % seconds)

    cd.eject_media()
    cd.refresh(force=True)
    step("eject", inserted=cd.inserted)

    started = time.monotonic()
    cd.insert_media(iso_url, inserted=True, write_protected=True)
    step("insert accepted", seconds=round(time.monotonic() - started, 2))
    while not cd.inserted:
        if time.monotonic() - started > 120:
            fail("media not Inserted within 120 s")
        time.sleep(0.3)
        cd.refresh(force=True)
    step("inserted", seconds=round(time.monotonic() - started, 2), image=cd.image)

    system.set_system_boot_options(sushy.BootSource.CD, enabled=sushy.BootSourceOverrideEnabled.ONCE)
    system.refresh(force=True)
    step("boot Cd once", target=system.boot.target.value, enabled=system.boot.enabled.value)
    if system.boot.target != sushy.BootSource.CD or system.boot.enabled != sushy.BootSourceOverrideEnabled.ONCE:
        fail("boot override not reported back: %s/%s" % (system.boot.target, system.boot.enabled))

    system.reset_system(sushy.ResetType.ON)
    seconds, seen = wait_for_power(system, sushy.PowerState.ON)
    step("On", seconds=seconds, seen=seen)

elif phase == "power":
    system.refresh(force=True)
    step("after one-time boot", target=system.boot.target.value, enabled=system.boot.enabled.value)

    system.reset_system(sushy.ResetType.FORCE_RESTART)
    seconds, seen = wait_for_power(system, sushy.PowerState.ON)
    step("ForceRestart", seconds=seconds, seen=seen)

    system.reset_system(sushy.ResetType.GRACEFUL_SHUTDOWN)
    seconds, seen = wait_for_power(system, sushy.PowerState.OFF)
    step("GracefulShutdown", seconds=seconds, seen=seen)

    system.reset_system(sushy.ResetType.ON)
    seconds, seen = wait_for_power(system, sushy.PowerState.ON)
    step("On again", seconds=seconds, seen=seen)
    system.reset_system(sushy.ResetType.FORCE_OFF)
    seconds, seen = wait_for_power(system, sushy.PowerState.OFF)
    step("ForceOff again", seconds=seconds, seen=seen)

    cd.eject_media()
    cd.refresh(force=True)
    step("eject after install", inserted=cd.inserted)
    if cd.inserted:
        fail("media still Inserted after EjectMedia")

    try:
        system.reset_system("Nmi")
        fail("Nmi was accepted")
    except (sushy.exceptions.InvalidParameterValueError, sushy.exceptions.BadRequestError) as exc:
        step("Nmi rejected", error=type(exc).__name__)
elif phase == "inspect":
    # Ironic's RedfishInspect.inspect_hardware, step by step (Ironic 21.4).
    GiB = 1024 ** 3
    system.refresh(force=True)
    inspected = {}
    if system.memory_summary and system.memory_summary.size_gib:
        inspected["memory_mb"] = system.memory_summary.size_gib * 1024
    cpus, arch = system.processors.summary
    inspected["cpus"] = cpus
    inspected["cpu_arch"] = {sushy.PROCESSOR_ARCH_x86: "x86_64", sushy.PROCESSOR_ARCH_IA_64: "ia64",
                             sushy.PROCESSOR_ARCH_ARM: "arm", sushy.PROCESSOR_ARCH_MIPS: "mips",
                             sushy.PROCESSOR_ARCH_OEM: "oem"}.get(arch)
    # _detect_local_gb: the smallest disk of at least 4 GiB, from SimpleStorage and from Storage (volumes, else
    # drives), the smaller of the two; minus 1 GiB.
    simple = [size for size in system.simple_storage.disks_sizes_bytes if size >= 4 * GiB] or [0]
    try:
        volumes = system.storage.volumes_sizes_bytes
    except sushy.exceptions.SushyError:
        volumes = []
    storage = [size for size in (volumes or system.storage.drives_sizes_bytes) if size >= 4 * GiB] or [0]
    local = min(simple[0], storage[0]) if simple[0] and storage[0] else max(simple[0], storage[0])
    inspected["local_gb"] = max(0, int(local / GiB - 1))
    inspected["boot_mode"] = system.boot.mode.value if system.boot.mode else None
    # ironic.drivers.modules.redfish.utils.get_enabled_macs: ports only for Enabled NICs with a MAC
    inspected["macs"] = sorted(mac for mac, state in system.ethernet_interfaces.summary.items()
                               if mac and state == sushy.STATE_ENABLED)
    results["inspected"] = inspected
    processors = system.processors.get_members()
    results["processors"] = [dict(id=p.identity, type=p.processor_type.value if p.processor_type else None,
                                  instruction_set=p.instruction_set.value if p.instruction_set else None,
                                  cores=p.total_cores, threads=p.total_threads, model=p.model) for p in processors]
    drives = [d for st in system.storage.get_members() for d in st.drives]
    results["drives"] = [dict(id=d.identity, capacity=d.capacity_bytes, media_type=d.media_type,
                              state=d.status.state.value if d.status.state else None) for d in drives]
    # The BIOS interface caches the attributes; the management interface reads secure boot and the BIOS version.
    results["bios"] = dict(attributes=system.bios.attributes, version=system.bios_version)
    results["secure_boot"] = dict(enabled=system.secure_boot.enabled,
                                  current_boot=system.secure_boot.current_boot.value if system.secure_boot.current_boot else None)
    results["manager_firmware"] = manager.firmware_version
    step("inspected", **inspected)
elif phase == "bios":
    # Ironic's redfish BIOS interface: apply_configuration sets the attributes (OnReset when the Bios offers it),
    # reboots, then compares Bios.Attributes with what it asked for; factory_reset posts ResetBios, then reboots.
    bios = system.bios
    results["supported_apply_times"] = sorted(t.value for t in bios.supported_apply_times)
    results["before"] = bios.attributes
    apply_time = sushy.APPLY_TIME_ON_RESET if sushy.APPLY_TIME_ON_RESET in bios.supported_apply_times else None
    requested = {"BootMode": "Uefi", "SecureBoot": "Enabled"}
    bios.set_attributes(requested, apply_time=apply_time)
    bios.refresh(force=True)
    results["pending"] = bios.pending_attributes
    results["before_reset"] = bios.attributes
    system.reset_system(sushy.RESET_ON)
    wait_for_power(system, sushy.POWER_STATE_ON)
    bios.refresh(force=True)
    results["after_reset"] = bios.attributes
    results["pending_after_reset"] = bios.pending_attributes
    results["not_applied"] = {k: v for k, v in requested.items() if bios.attributes.get(k) != v}

    def current_secure_boot():
        system.secure_boot.refresh(force=True)
        return system.secure_boot.current_boot.value if system.secure_boot.current_boot else None

    started = time.monotonic()
    while current_secure_boot() != "Enabled" and time.monotonic() - started < 30:
        time.sleep(0.2)
    results["current_boot_after_reset"] = current_secure_boot()

    bios.reset_bios()
    bios.refresh(force=True)
    results["pending_after_reset_bios"] = bios.pending_attributes
    # Ironic's reboot of a powered-on node.
    system.reset_system(sushy.RESET_FORCE_RESTART)
    started = time.monotonic()
    while current_secure_boot() != "Disabled" and time.monotonic() - started < 30:
        time.sleep(0.2)
    results["current_boot_after_factory_reset"] = current_secure_boot()
    bios.refresh(force=True)
    results["after_factory_reset"] = bios.attributes
    try:
        bios.set_attributes({"Smm": "Disabled"})
        fail("a read-only attribute was accepted")
    except sushy.exceptions.BadRequestError as exc:
        results["read_only_error"] = str(exc)
    system.reset_system(sushy.RESET_FORCE_OFF)
    wait_for_power(system, sushy.POWER_STATE_OFF)
else:
    fail("unknown phase %s" % phase)

# Logout like Ironic's session close, then the old token must be refused.
session.close()
context = ssl.create_default_context(cafile=ca_file)
request = urllib.request.Request(base_url + "/redfish/v1/Systems", headers={"X-Auth-Token": token})
try:
    urllib.request.urlopen(request, context=context)
    fail("the session token still works after logout")
except urllib.error.HTTPError as exc:
    step("logout", old_token_status=exc.code)

print(json.dumps(results, default=str))
