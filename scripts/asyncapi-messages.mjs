// Checks messages captured on the wire against an AsyncAPI document that
// amqprpc-gen wrote: -asyncapi (amqprpc's protocol) or -asyncapi-oslo
// (oslo.messaging's, told by its <Service>.topic channels). Each request
// must be its method's request message on the channel its routing says
// (the topic, one server, the fanout exchange), each reply the reply
// message of the method its request asked for (by correlation_id, or
// oslo's _msg_id), and a stream's items, end, credits and cancel theirs,
// headers included where the document gives them; an oslo message is
// checked in its envelope and alone. What the document does not have is
// reported and skipped: a method of no interface of it (a NoSuchMethod,
// or another topic's), and batches of requests or replies. Exits 1 when a
// message does not match, or when none was checked. Topics are taken to
// have no dots. scripts/asyncapi.sh -messages DOC CAPTURE runs it:
//
//	node asyncapi-messages.mjs <ajv dir> DOC CAPTURE
//
// CAPTURE is JSON lines of {trace_key, exchange, routing_keys, properties,
// body}, as RabbitMQ's firehose tracer records messages (publish.<exchange>
// trace keys; deliveries repeat what was published and are not checked).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [ajvDir, docFile, captureFile] = process.argv.slice(2);
const require = createRequire(join(ajvDir, 'package.json'));
const Ajv = require(ajvDir).default;
const doc = JSON.parse(readFileSync(docFile, 'utf8'));
const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(doc, 'doc');
const oslo = Object.keys(doc.channels).some((c) => c.endsWith('.topic'));

// message returns where a channel's message is defined, following a
// reference to another channel's, or null.
const message = (channel, name) => {
	const m = doc.channels[channel]?.messages?.[name];
	return m ? m.$ref ?? `#/channels/${channel}/messages/${name}` : null;
};
const resolve = (at) => at.slice(2).split('/').reduce((o, k) => o?.[k], doc);
// candidates are the definitions of the message name on the channels whose
// ids end in suffix: one for each interface that has it.
const candidates = (suffix, name) =>
	Object.keys(doc.channels).filter((c) => c.endsWith(suffix)).map((c) => message(c, name)).filter(Boolean);

let checked = 0, failed = 0, skipped = 0;
// check validates a message against the first definition it matches, and
// reports it against the last when it matches none.
const check = (what, defs, payloads, headers) => {
	const problems = [];
	for (const at of defs) {
		problems.length = 0;
		for (const p of payloads) {
			if (!resolve(at).payload) {
				if (p !== undefined) problems.push('a body, where the message has none');
				continue;
			}
			const v = ajv.getSchema(`doc${at}/payload`);
			if (p === undefined) problems.push('no body');
			else if (!v(p)) problems.push(`payload: ${ajv.errorsText(v.errors)}`);
		}
		if (headers && resolve(at).headers) {
			const v = ajv.getSchema(`doc${at}/headers`);
			if (!v(headers)) problems.push(`headers: ${ajv.errorsText(v.errors)}`);
		}
		if (problems.length === 0) break;
	}
	checked++;
	if (problems.length > 0) {
		failed++;
		console.log(`${captureFile}: ${what}: ${problems.join('; ')}`);
	}
};
const skip = (why) => {
	skipped++;
	console.log(`${captureFile}: skipped: ${why}`);
};

const methods = new Map(); // request id -> the method asked
for (const line of readFileSync(captureFile, 'utf8').split('\n')) {
	if (!line.trim()) continue;
	const rec = JSON.parse(line);
	if (!rec.trace_key.startsWith('publish.')) continue;
	const key = rec.routing_keys[0] ?? '';
	const where = `${rec.exchange || '(default)'}/${key}`;
	const props = rec.properties ?? {};
	const headers = { ...(props.headers ?? {}) };
	for (const p of ['correlation_id', 'reply_to', 'user_id']) if (p in props) headers[p] = props[p];
	const body = rec.body === '' ? undefined : JSON.parse(rec.body);

	if (oslo) {
		const inner = 'oslo.message' in body ? JSON.parse(body['oslo.message']) : body;
		if ('method' in inner) {
			if (inner._msg_id) methods.set(inner._msg_id, inner.method);
			const kind = rec.exchange.endsWith('_fanout') ? '.fanout' : key.includes('.') ? '.server' : '.topic';
			const defs = candidates(kind, `${inner.method}.request`);
			if (defs.length === 0) skip(`${inner.method} to ${where}: no such request on a ${kind.slice(1)} channel`);
			else check(`${inner.method} request to ${where}`, defs, [body, inner]);
			continue;
		}
		const method = methods.get(inner._msg_id);
		const defs = method ? candidates('.replies', `${method}.reply`) : [];
		if (defs.length === 0) skip(`a reply to ${method ?? 'an unknown request'}`);
		else check(`${method} reply`, defs, [body, inner]);
		continue;
	}

	const type = props.type ?? '';
	if (type === 'amqprpc.requests' || type === 'amqprpc.replies') {
		skip(`a batch (${type}) to ${where}: batches are not in the document`);
		continue;
	}
	if (type === 'amqprpc.credit' || type === 'amqprpc.cancel') {
		const method = methods.get(props.correlation_id);
		const name = `${method}.${type.slice('amqprpc.'.length)}`;
		const defs = method ? candidates('.credits', name) : [];
		if (defs.length === 0) skip(`${type} of ${method ?? 'an unknown stream'}`);
		else check(`${name} to ${where}`, defs, [body], headers);
		continue;
	}
	if (body !== undefined && 'method' in body) {
		methods.set(props.correlation_id ?? body.msg_id, body.method);
		const kind = rec.exchange.includes('.fanout.') ? '.fanout' : key.includes('.') ? '.server' : '.requests';
		const defs = candidates(kind, `${body.method}.request`);
		if (defs.length === 0) skip(`${body.method} to ${where}: no such request on a ${kind.slice(1)} channel`);
		else check(`${body.method} request to ${where}`, defs, [body], headers);
		continue;
	}
	const method = methods.get(props.correlation_id);
	const name = `${method}.${type === 'amqprpc.items' ? 'items' : type === 'amqprpc.end' ? 'end' : 'reply'}`;
	const defs = method ? candidates('.replies', name) : [];
	if (defs.length === 0) skip(`a reply (${type || 'no type'}) to ${method ?? 'an unknown request'}`);
	else check(`${name} to ${where}`, defs, [body], headers);
}
console.log(`${captureFile}: ${checked} messages checked against ${docFile}, ${failed} mismatches, ${skipped} skipped`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
