import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// Rules of the layout that the compiler cannot check (docs/architecture.md): a change that breaks one
// fails here with the file that broke it.

const SRC = join(import.meta.dirname, '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const files = sourceFiles(SRC).map((path) => ({ path: relative(SRC, path), text: readFileSync(path, 'utf8') }));

/** The src/-relative .ts files a file imports (relative imports only). */
function importsOf(file: { path: string; text: string }): string[] {
  return [...file.text.matchAll(/from '(\.[^']+)\.js'/g)].map((match) =>
    relative(SRC, resolve(SRC, dirname(file.path), `${match[1]}.ts`)),
  );
}

describe('layout', () => {
  it('publishes events only from services, so every surface that changes state tells subscribers', () => {
    const surfaces = files.filter((file) => /^(schema|http)\//.test(file.path));
    expect(surfaces.length).toBeGreaterThan(10);
    const publishing = surfaces.filter((file) => /\bevents\.publish\(/.test(file.text)).map((file) => file.path);
    expect(publishing).toEqual([]);
  });

  it('changes consent only through the consent service (the demo seeds its fixtures directly)', () => {
    const writers = files.filter((file) => /\.insert\(consentEvents\)/.test(file.text)).map((file) => file.path);
    expect(writers.sort()).toEqual(['services/consent.ts', 'services/demo.ts']);
  });

  it('keeps every file under src/ at 500 lines or fewer', () => {
    const long = files.filter((file) => file.text.split('\n').length > 500).map((file) => file.path);
    expect(long).toEqual([]);
  });

  it('keeps services below the request context and the HTTP layer', () => {
    const services = files.filter((file) => file.path.startsWith('services/'));
    const upward = services.flatMap((file) =>
      importsOf(file)
        .filter((target) => /^(context|deps|app)\.ts$|^(http|schema)\//.test(target))
        .map((target) => `${file.path} -> ${target}`),
    );
    expect(services.length).toBeGreaterThan(10);
    expect(upward).toEqual([]);
  });
});
