/**
 * One structured document on stdout, JSON or YAML (`-o json`, `-o yaml`). Apart from src/cli/output.ts
 * because it brings the yaml library, which only the verbs' implementations need: output.ts is
 * loaded by every `waygate` process to build the command tree (docs/architecture.md, "Adding a CLI verb").
 */
import { stringify as stringifyYaml } from 'yaml';
import { stdout, writeJson, type TextSink } from './output.ts';

/**
 * Writes one structured document: JSON as writeJson does, or YAML (block style, keys in the
 * object's order; the yaml library's default schema, so strings that look like numbers are quoted).
 */
export function writeData(value: unknown, format: 'json' | 'yaml', stream: TextSink = stdout()): void {
  if (format === 'json') writeJson(value, stream);
  else stream.write(stringifyYaml(value, { lineWidth: 0 }));
}
