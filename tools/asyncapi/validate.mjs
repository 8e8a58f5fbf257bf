// Validates an AsyncAPI document with the official parser and prints its
// diagnostics as JSON: [{"severity": "error"|"warning"|..., "code", "message", "path"}].
// Usage: node validate.mjs path/to/asyncapi.json
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Parser, fromFile } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];
const file = resolve(process.argv[2]);
const parser = new Parser();
const { diagnostics } = await fromFile(parser, file).parse({
  source: pathToFileURL(file).href,
});
const report = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  message: d.message,
  path: d.path.join("/"),
}));
process.stdout.write(JSON.stringify(report, null, 1) + "\n");
