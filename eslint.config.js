// Lint config: typescript-eslint's type-aware recommended rules over src, test and bench.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import { layersPlugin } from "./eslint-layers.js";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/", ".bench/"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-floating-promises": "error",
      "no-empty": ["error", { allowEmptyCatch: false }],
      eqeqeq: ["error", "always"],
    },
  },
  {
    files: ["src/**/*.ts"],
    plugins: { layers: layersPlugin },
    rules: { "layers/imports-downward": "error" },
  },
  {
    files: ["eslint.config.js", "eslint-layers.js", "scripts/**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
  },
);
