"use strict";
// Loaded into jsii's node process by gpufleet.providers (NODE_OPTIONS=--require). The AWS provider package's
// lib/index.js requires all 2,135 resource modules (247 MB of JS) when jsii loads the package, though a
// synth uses about 50: compiling them was about 2.5 of node's 3.5 CPU-s per synth. This loads that index
// lazily instead: each export is a getter that requires its module on first use, as the eager index would
// have, so the synthesized JSON is byte-identical. An index of any other layout loads as is.
const fs = require("fs");
const Module = require("module");

const PROVIDER_INDEX = /[\\/]@cdktf[\\/]provider-aws[\\/](?:[^\\/]+[\\/]){0,2}lib[\\/]index\.js$/;
const REQUIRE_LINE = /^exports\.([A-Za-z_$][\w$]*) = require\("(\.\/[\w.\-/]+)"\);$/;
// What else the generated index holds: comments, "use strict", the __esModule flag, `exports.a = ... = void 0;`.
const OTHER_LINE = new RegExp(
  '^(?:"use strict";|//.*|/\\*\\*|\\s*\\*.*|' +
  'Object\\.defineProperty\\(exports, "__esModule", \\{ value: true \\}\\);|' +
  "(?:exports\\.[A-Za-z_$][\\w$]* = )+void 0;|)$");

/** [export name, relative module path] for every line of a generated index, or null for any other layout. */
function lazyEntries(source) {
  const entries = [];
  for (const line of source.split(/\r?\n/)) {
    const match = REQUIRE_LINE.exec(line);
    if (match) entries.push([match[1], match[2]]);
    else if (!OTHER_LINE.test(line)) return null;
  }
  return entries.length > 0 ? entries : null;
}

function defineLazily(module, entries) {
  Object.defineProperty(module.exports, "__esModule", { value: true });
  for (const [name, path] of entries) {
    Object.defineProperty(module.exports, name, {
      configurable: true, enumerable: true,
      get() {
        const value = module.require(path);
        Object.defineProperty(module.exports, name, { value, configurable: true, enumerable: true, writable: true });
        return value;
      },
    });
  }
}

const loadJs = Module._extensions[".js"];
Module._extensions[".js"] = function loadProviderIndexLazily(module, filename) {
  const entries = PROVIDER_INDEX.test(filename) ? lazyEntries(fs.readFileSync(filename, "utf8")) : null;
  if (entries === null) return loadJs(module, filename);
  defineLazily(module, entries);
};

module.exports = { lazyEntries };
