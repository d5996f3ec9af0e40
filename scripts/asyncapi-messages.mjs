// Checks messages captured on the wire against an oslo mode AsyncAPI
// document (amqprpc-gen -asyncapi-oslo): each request published to the
// control exchange or a fanout exchange must be the request message of its
// method on the channel its routing says (topic, one server, fanout), and
// each reply the reply message of the method its _msg_id asked, with the
// envelope as sent and with the message inside it alone. A request for a
// method the document does not have is reported and skipped (a capture of
// a NoSuchMethod). Exits 1 when a message does not match, or when none was
// checked. scripts/asyncapi.sh -messages CAPTURE DOC runs it:
//
//	node asyncapi-messages.mjs <ajv dir> DOC CAPTURE
//
// CAPTURE is JSON lines of {trace_key, exchange, routing_keys, body}, as
// RabbitMQ's firehose tracer records messages (publish.<exchange> keys).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [ajvDir, docFile, captureFile] = process.argv.slice(2);
const require = createRequire(join(ajvDir, 'package.json'));
const Ajv = require(ajvDir).default;
const doc = JSON.parse(readFileSync(docFile, 'utf8'));
const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(doc, 'doc');

// validator returns the validator of a message's payload, or null; a
// message may be a reference to another channel's.
const validator = (channel, message) => {
	const m = doc.channels[channel]?.messages?.[message];
	if (!m) return null;
	const at = m.$ref ?? `#/channels/${channel}/messages/${message}`;
	return ajv.getSchema(`doc${at}/payload`);
};

// requestChannels are the channels of each kind, by service.
const byKind = (suffix) => Object.keys(doc.channels).filter((c) => c.endsWith(suffix));

const methods = new Map(); // _msg_id -> the method asked
let checked = 0, failed = 0;
const check = (what, validate, value) => {
	if (!validate(value)) {
		console.log(`${captureFile}: ${what}: ${ajv.errorsText(validate.errors)}`);
		failed++;
	}
};
for (const line of readFileSync(captureFile, 'utf8').split('\n')) {
	if (!line.trim()) continue;
	const rec = JSON.parse(line);
	if (!rec.trace_key.startsWith('publish.')) continue; // deliveries repeat what was published
	const body = JSON.parse(rec.body);
	const inner = 'oslo.message' in body ? JSON.parse(body['oslo.message']) : body;
	const key = rec.routing_keys[0] ?? '';
	if ('method' in inner) {
		const kind = rec.exchange.endsWith('_fanout') ? '.fanout' : key.includes('.') ? '.server' : '.topic';
		const channels = byKind(kind).filter((c) => validator(c, `${inner.method}.request`));
		if (inner._msg_id) methods.set(inner._msg_id, inner.method);
		if (channels.length === 0) {
			console.log(`${captureFile}: skipped: ${inner.method} to ${rec.exchange}/${key}: no such request on a ${kind.slice(1)} channel`);
			continue;
		}
		// A method of several services (a namespace each) matches one of them.
		const ok = channels.some((c) => validator(c, `${inner.method}.request`)(body) && validator(c, `${inner.method}.request`)(inner));
		if (!ok) {
			const v = validator(channels[0], `${inner.method}.request`);
			check(`${inner.method} request to ${rec.exchange}/${key}`, v, body);
			check(`${inner.method} request to ${rec.exchange}/${key} (its message)`, v, inner);
		}
		checked++;
		continue;
	}
	const method = methods.get(inner._msg_id);
	const channels = byKind('.replies').filter((c) => validator(c, `${method}.reply`));
	if (!method || channels.length === 0) {
		console.log(`${captureFile}: skipped: a reply to ${method ?? 'an unknown request'}`);
		continue;
	}
	const v = validator(channels[0], `${method}.reply`);
	check(`${method} reply`, v, body);
	check(`${method} reply (its message)`, v, inner);
	checked++;
}
console.log(`${captureFile}: ${checked} messages checked against ${docFile}, ${failed} mismatches`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
