// Parses each AsyncAPI document named on the command line with
// @asyncapi/parser (its directory is the first argument), prints its
// diagnostics, and exits 1 if any document has an error or does not parse.
// scripts/asyncapi.sh runs it.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [parserDir, ...files] = process.argv.slice(2);
const require = createRequire(join(parserDir, 'package.json'));
const { Parser, DiagnosticSeverity } = require(parserDir);
const parser = new Parser();

let failed = false;
for (const file of files) {
	const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'), { source: file });
	const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
	for (const d of diagnostics) {
		const level = d.severity === DiagnosticSeverity.Error ? 'error' : d.severity === DiagnosticSeverity.Warning ? 'warning' : null;
		if (level) {
			console.log(`${file}: ${level}: ${d.path.join('.') || '(document)'}: ${d.message} (${d.code})`);
		}
	}
	if (errors.length > 0 || !document) {
		console.log(`${file}: invalid: ${errors.length} error(s)${document ? '' : ', no document'}`);
		failed = true;
		continue;
	}
	console.log(`${file}: valid AsyncAPI ${document.version()}`);
}
process.exit(failed ? 1 : 0);
