// Runs the siren-node firmware specs under real MicroPython (its WebAssembly port) on Node.
//
//   node run.mjs FIRMWARE_DIR SPEC.py...
//
// FIRMWARE_DIR holds the firmware as source (.py) or as mpy-cross output (.mpy). Each
// spec runs in a fresh interpreter with the firmware at /lib/siren_node and the helper
// modules of this folder (every .py file not named *_spec.py) at /lib. The spec's
// test_* functions run in turn; each prints one result line, which this runner repeats
// as JSON before closing with "N passed, N failed". The exit status is 1 on any failure.
import { readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const RESULT = "@@result ";
const here = dirname(fileURLToPath(import.meta.url));
const [firmwareDir, ...specs] = process.argv.slice(2);
if (!firmwareDir || specs.length === 0) {
  console.error("usage: node run.mjs FIRMWARE_DIR SPEC.py...");
  process.exit(2);
}

function pythonFiles(dir, suffixes = [".py"]) {
  return readdirSync(dir).filter((name) => suffixes.some((suffix) => name.endsWith(suffix)));
}

async function runSpec(spec) {
  const output = [];
  const mp = await loadMicroPython({
    stdout: (line) => output.push(line),
    stderr: (line) => output.push(line),
  });
  mp.FS.mkdirTree("/lib/siren_node");
  for (const name of pythonFiles(firmwareDir, [".py", ".mpy"])) {
    mp.FS.writeFile(`/lib/siren_node/${name}`, readFileSync(join(firmwareDir, name)));
  }
  for (const name of pythonFiles(here).filter((n) => !n.endsWith("_spec.py"))) {
    mp.FS.writeFile(`/lib/${name}`, readFileSync(join(here, name)));
  }
  const source = readFileSync(spec, "utf8");
  const results = [];
  try {
    mp.runPython(`${source}\nimport mptest\nmptest.run(globals())\n`);
  } catch (error) {
    results.push({ test: "<module>", ok: false, detail: error.message });
  }
  const chatter = output.filter((line) => !line.startsWith(RESULT));
  for (const line of output.filter((l) => l.startsWith(RESULT))) {
    results.push(JSON.parse(line.slice(RESULT.length)));
  }
  return results.map((r) => ({ spec: basename(spec), output: chatter, ...r }));
}

let passed = 0;
let failed = 0;
for (const spec of specs) {
  for (const result of await runSpec(spec)) {
    if (result.ok) {
      passed += 1;
    } else {
      failed += 1;
    }
    console.log(JSON.stringify(result));
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
