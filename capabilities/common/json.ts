// Values the module stored as JSON text (annotations, Secret keys), read back through a schema.
import type { z } from "zod";

/** `text` parsed as JSON and read by `schema`; undefined when it is not JSON or not what the schema accepts. */
export function parseJsonAs<S extends z.ZodType>(schema: S, text: string): z.output<S> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}
