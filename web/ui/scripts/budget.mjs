// Production bundle budget: the gzipped JavaScript in dist/assets must stay under the limit.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const LIMIT_KB = Number(process.env.LAAS_UI_BUDGET_KB || 350);
const dir = new URL('../dist/assets/', import.meta.url).pathname;
let total = 0;
for (const name of readdirSync(dir).filter((n) => n.endsWith('.js'))) {
  const size = gzipSync(readFileSync(join(dir, name)), { level: 9 }).length;
  total += size;
  console.log(`  ${name}: ${(size / 1024).toFixed(1)} KB gzipped`);
}
const kb = total / 1024;
if (kb > LIMIT_KB) {
  console.error(`bundle budget exceeded: ${kb.toFixed(1)} KB gzipped JS > ${LIMIT_KB} KB`);
  process.exit(1);
}
console.log(`bundle budget ok: ${kb.toFixed(1)} KB gzipped JS <= ${LIMIT_KB} KB`);
