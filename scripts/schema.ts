/**
 * `npm run schema`: rewrites the parts of the JSON Schemas (schema/) and of
 * docs/writing-policies.md that list policy attributes, from the attribute catalogue
 * (src/policy/attributes.ts, rendered by src/policy/attribute-docs.ts). `--check` writes nothing
 * and exits 1 when a file is not current (test/policy/attributes.test.ts checks the same).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { RENDERERS } from '../src/policy/attribute-docs.ts';

const check = process.argv.includes('--check');
let stale = 0;
for (const [file, render] of Object.entries(RENDERERS)) {
  const path = new URL(`../${file}`, import.meta.url);
  const current = readFileSync(path, 'utf8');
  const next = render(current);
  if (next === current) continue;
  stale++;
  if (check) {
    console.error(`${file} is not current: run npm run schema`);
  } else {
    writeFileSync(path, next);
    console.log(`wrote ${file}`);
  }
}
process.exitCode = check && stale > 0 ? 1 : 0;
