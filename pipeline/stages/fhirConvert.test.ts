import { fhirConvertStage, hubIdOf } from './fhirConvert';
import { fhirIdentifyStage } from './fhirIdentify';
import { fhirParseStage } from './fhirParse';

const server = 'https://emr.example/fhir';
const ctx = { memberId: 'lead', channelId: 'rest', rawId: 42, server, receivedAt: new Date('2024-01-01T00:00:00Z') };

describe('FHIR branch of the pipeline (pure stages)', () => {
  test('hub ids are deterministic per member, server, type and source id', () => {
    expect(hubIdOf('lead', server, 'Patient', 'p1')).toBe(hubIdOf('lead', server, 'Patient', 'p1'));
    expect(hubIdOf('lead', server, 'Patient', 'p1')).not.toBe(hubIdOf('other', server, 'Patient', 'p1'));
    expect(hubIdOf('lead', server, 'Patient', 'p1')).not.toBe(hubIdOf('lead', 'https://other.example/fhir', 'Patient', 'p1'));
    expect(hubIdOf('lead', server, 'Patient', 'p1')).toMatch(/^[0-9a-f]{40}$/);
  });

  test('references on the same server are rewritten; others are kept; provenance names the source version', () => {
    const parsed = fhirParseStage(
      Buffer.from(
        JSON.stringify({
          resourceType: 'Encounter',
          id: 'e1',
          meta: { versionId: '7', lastUpdated: '2024-03-01T10:00:00Z' },
          status: 'finished',
          class: { code: 'AMB' },
          subject: { reference: 'Patient/p1' },
          participant: [{ individual: { reference: `${server}/Practitioner/d1/_history/2` } }, { individual: { reference: 'https://elsewhere.example/fhir/Practitioner/x' } }],
          serviceProvider: { reference: 'urn:uuid:4a1e' },
        }),
      ),
    );
    const converted = fhirConvertStage(parsed, ctx);
    const [encounter, org, provenance] = converted.resources as Array<Record<string, any>>;
    expect(encounter!.id).toBe(hubIdOf('lead', server, 'Encounter', 'e1'));
    expect(encounter!.subject.reference).toBe(`Patient/${hubIdOf('lead', server, 'Patient', 'p1')}`);
    expect(encounter!.participant[0].individual.reference).toBe(`Practitioner/${hubIdOf('lead', server, 'Practitioner', 'd1')}`);
    expect(encounter!.participant[1].individual.reference).toBe('https://elsewhere.example/fhir/Practitioner/x');
    expect(encounter!.serviceProvider.reference).toBe('urn:uuid:4a1e');
    expect(encounter!.meta).toEqual({ lastUpdated: '2024-03-01T10:00:00Z', source: `${server}/Encounter/e1/_history/7` });
    expect(org!.resourceType).toBe('Organization');
    expect(provenance!.target).toEqual([{ reference: `Encounter/${encounter!.id}` }]);
    expect(provenance!.entity.map((e: any) => e.what.reference ?? e.what.identifier.value)).toEqual([`${server}/Encounter/e1/_history/7`, 'urn:yilian:raw:42']);
    expect(provenance!.recorded).toBe('2024-03-01T10:00:00Z');
    const identified = fhirIdentifyStage({ ...converted, mappingVersions: [] }, server);
    expect(identified.patient).toBeUndefined();
    expect(identified.eventTime?.toISOString()).toBe('2024-03-01T10:00:00.000Z');
  });

  test('a Patient is a source patient by its MR identifier, with its demographics', () => {
    const parsed = fhirParseStage(
      Buffer.from(
        JSON.stringify({
          resourceType: 'Patient',
          id: 'p1',
          identifier: [{ system: 'urn:ssn', value: '999' }, { type: { coding: [{ code: 'MR' }] }, system: 'urn:mrn', value: 'MRN-1' }],
          name: [{ family: '王', given: ['小', '明'] }],
          gender: 'male',
          birthDate: '1980-02-03',
        }),
      ),
    );
    const identified = fhirIdentifyStage({ ...fhirConvertStage(parsed, ctx), mappingVersions: [] }, server);
    expect(identified.patient).toEqual({ mrn: 'MRN-1', authority: 'urn:mrn', demographics: { family: '王', given: '小 明', sex: 'male', birthDate: '19800203' } });
  });

  test('parse refuses invalid R4 with every problem located', () => {
    expect(() => fhirParseStage(Buffer.from('{"resourceType":"Patient","id":"p","gender":"robot","colour":"blue"}'))).toThrow(/Patient\.gender: value "robot".*Patient\.colour: unknown element|Patient\.colour: unknown element.*Patient\.gender/);
    expect(() => fhirParseStage(Buffer.from('{'))).toThrow(/not JSON/);
  });
});
