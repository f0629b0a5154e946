// A lint rule that keeps imports in src/ running downwards: each folder may import its own layer and the ones below.
import { dirname, join, relative, resolve } from "node:path";

/**
 * Lowest first. A file or folder under src/ sits in the first layer whose entry names it or a folder
 * above it; main.ts and app.ts are the top. Lateral imports within a layer are allowed.
 */
export const LAYERS = [
  // The config's types and durations are vocabulary; loading and checking a file is an edge, beside http.
  ["errors.ts", "text.ts", "shipped.ts", "unix-http.ts", "config/types.ts", "config/duration.ts"],
  ["domain"],
  ["procfs"],
  ["runtimes"],
  ["reaper"],
  ["poller"],
  ["metrics", "http", "systemd", "config"],
  ["cli", "app.ts"],
  ["main.ts"],
];

/** The layer of a path relative to src/, or null when no layer names it. */
export function layerOf(path) {
  for (const [index, entries] of LAYERS.entries()) {
    if (entries.some((entry) => path === entry || path.startsWith(`${entry}/`))) return index;
  }
  return null;
}

const SRC = resolve(import.meta.dirname, "src");

export const layersPlugin = {
  rules: {
    "imports-downward": {
      meta: {
        type: "problem",
        docs: { description: "src/ imports run downwards: domain/ and procfs/ never import a higher layer, and so on up" },
        schema: [],
        messages: {
          upward:
            "{{from}} (layer {{fromLayer}}) imports {{to}} (layer {{toLayer}}), a higher layer: move the shared piece down, never import upwards",
          unknown: "{{path}} is in no layer of eslint-layers.js: add it there",
        },
      },
      create(context) {
        const file = relative(SRC, context.filename);
        if (file.startsWith("..")) return {};
        const fromLayer = layerOf(file);
        const check = (node, specifier) => {
          if (typeof specifier !== "string" || !specifier.startsWith(".")) return;
          const target = relative(SRC, join(dirname(context.filename), specifier)).replace(/\.js$/, ".ts");
          if (target.startsWith("..")) return;
          const toLayer = layerOf(target);
          if (fromLayer === null) return context.report({ node, messageId: "unknown", data: { path: file } });
          if (toLayer === null) return context.report({ node, messageId: "unknown", data: { path: target } });
          if (toLayer > fromLayer) context.report({ node, messageId: "upward", data: { from: file, fromLayer, to: target, toLayer } });
        };
        return {
          ImportDeclaration: (node) => check(node.source, node.source.value),
          ExportNamedDeclaration: (node) => node.source && check(node.source, node.source.value),
          ExportAllDeclaration: (node) => check(node.source, node.source.value),
          ImportExpression: (node) => node.source.type === "Literal" && check(node.source, node.source.value),
        };
      },
    },
  },
};
