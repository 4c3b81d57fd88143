import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

// Once per test run, before any file: compile src/ to dist/ (scripts/build.mjs), the code process-level
// tests start as `npm start` would.
export default function setup() {
  execFileSync(process.execPath, [join(import.meta.dirname, '..', 'scripts', 'build.mjs')], { stdio: 'inherit' });
}
