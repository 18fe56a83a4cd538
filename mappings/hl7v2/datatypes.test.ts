import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hl7Message } from './message';
import {
  abnormalFlagToInterpretation,
  administrativeGender,
  codingSystemUri,
  componentsOf,
  cqToQuantity,
  cweToCodeableConcept,
  cxToIdentifier,
  diagnosticReportStatus,
  nameText,
  nmToQuantity,
  observationStatus,
  patientClass,
  snToValue,
  toDate,
  toDateTime,
  xadToAddress,
  xcnToPractitioner,
  xpnCalledBy,
  xpnToHumanName,
  xtnToContactPoint,
} from './datatypes';

const samples = join(__dirname, '../../../shared/data/hl7v2/fhir-converter');
const sample = (name: string) => Hl7Message.parse(readFileSync(join(samples, 'messages', `${name}.hl7`), 'utf8'));
const split = (field: string) => field.split('^');

describe('toDateTime / toDate (TS, DTM, DT)', () => {
  it.each([
    ['198908181126+0215', '1989-08-18T11:26:00+02:15'],
    ['20110531140551-0500', '2011-05-31T14:05:51-05:00'],
    ['201203141259-0215', '2012-03-14T12:59:00-02:15'],
    ['20210817151943.4+0200', '2021-08-17T15:19:43.4+02:00'],
    ['2019', '2019'],
    ['201901', '2019-01'],
    ['20190102', '2019-01-02'],
    ['20190102+0800', '2019-01-02'],
    ['2019010213', '2019-01-02T13:00:00+08:00'],
    ['20240102102900', '2024-01-02T10:29:00+08:00'],
    ['20240102102900-0000', '2024-01-02T10:29:00+00:00'],
  ])('%s → %s', (v, expected) => {
    expect(toDateTime(v)).toBe(expected);
  });

  it('uses the given default offset when none is stated', () => {
    expect(toDateTime('20240102102900', -300)).toBe('2024-01-02T10:29:00-05:00');
  });

  it.each(['', '2019-01-02', '20190230', '201913', '2019010225', 'abc', '""'])('rejects %j', (v) => {
    expect(toDateTime(v)).toBeUndefined();
  });

  it('toDate keeps the calendar date as sent, at its precision', () => {
    expect(toDate('198808181126+0215')).toBe('1988-08-18');
    expect(toDate('19880818')).toBe('1988-08-18');
    expect(toDate('198808')).toBe('1988-08');
    expect(toDate('1988')).toBe('1988');
    // 23:30 at -05:00 is already the next day in UTC; a birth date is not shifted
    expect(toDate('199001012330-0500')).toBe('1990-01-01');
    expect(toDate('')).toBeUndefined();
  });

  it('MSH-7 of ORU-R01-01.hl7 keeps its -02:15 offset (the peer rewrites it to +05:30)', () => {
    // expected/ORU-R01-01-expected.json Bundle.timestamp: "2012-03-14T20:44:00+05:30" (same instant)
    const msh = sample('ORU-R01-01').msh;
    const ours = toDateTime(msh.value(7))!;
    expect(ours).toBe('2012-03-14T12:59:00-02:15');
    expect(new Date(ours).getTime()).toBe(new Date('2012-03-14T20:44:00+05:30').getTime());
  });
});

describe('xpnToHumanName (XPN → HumanName)', () => {
  it('Chinese name: text family+given without a space', () => {
    expect(xpnToHumanName(split('张^伟^^^^^L'))).toEqual({ use: 'official', text: '张伟', family: '张', given: ['伟'] });
    expect(xpnToHumanName(split('欧阳^娜娜'))).toEqual({ text: '欧阳娜娜', family: '欧阳', given: ['娜娜'] });
  });

  it('non-Chinese name: text "given family", family first when XPN-11 is F', () => {
    expect(xpnToHumanName(split('Finn^Huckleberry^^^^^L'))).toEqual({ use: 'official', text: 'Huckleberry Finn', family: 'Finn', given: ['Huckleberry'] });
    expect(nameText('Zhang', ['Wei'], 'F')).toBe('Zhang Wei');
    expect(nameText('张', ['Wei'])).toBe('Wei 张'); // mixed scripts are not written as Chinese
  });

  it('PID-5 of ADT-A01-01.hl7: agrees with the peer on family/given/prefix/suffix/use, not on XPN-15', () => {
    const pid = sample('ADT-A01-01').segment('PID')!;
    const name = xpnToHumanName(componentsOf(pid, 5, 0));
    // peer (expected/ADT-A01-01-expected.json Patient.name[0]) adds "Addsm" (XPN-15 called by) to given
    expect(name).toEqual({
      use: 'usual',
      text: 'ADAM A EVERYMAN',
      family: 'EVERYMAN',
      given: ['ADAM', 'A'],
      prefix: ['Dr.'],
      suffix: ['III', 'MD', 'PF'],
      period: { start: '1924-10-12' },
    });
    expect(xpnCalledBy(componentsOf(pid, 5, 0))).toEqual({ use: 'nickname', given: ['Addsm'] });
    // second repetition: XPN-12/13 effective/expiration
    expect(xpnToHumanName(componentsOf(pid, 5, 1))).toEqual({
      use: 'official',
      text: 'stanley Josh',
      family: 'Josh',
      given: ['stanley'],
      period: { start: '1924-10-10', end: '1924-10-15' },
    });
  });

  it('name type codes follow the IG ConceptMap; A (alias/assigned) is not "anonymous"', () => {
    expect(xpnToHumanName(split('X^Y^^^^^M'))!.use).toBe('maiden');
    expect(xpnToHumanName(split('X^Y^^^^^N'))!.use).toBe('nickname');
    expect(xpnToHumanName(split('X^Y^^^^^MSK'))!.use).toBe('anonymous');
    expect(xpnToHumanName(split('X^Y^^^^^TEMP'))!.use).toBe('temp');
    expect(xpnToHumanName(split('X^Y^^^^^A'))!.use).toBeUndefined();
  });

  it('empty components → undefined', () => {
    expect(xpnToHumanName([])).toBeUndefined();
    expect(xpnToHumanName(split('^^^^^^L'))).toBeUndefined();
    expect(xpnCalledBy(split('X^Y'))).toBeUndefined();
  });
});

describe('cxToIdentifier (CX → Identifier)', () => {
  it('namespace-only assigning authority → member-local URN, type v2-0203, assigner display', () => {
    expect(cxToIdentifier(split('123456^^^RMYY^MR'), 'm1')).toEqual({
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] },
      system: 'urn:yilian:m1:id:RMYY',
      value: '123456',
      assigner: { display: 'RMYY' },
    });
  });

  it('DB1-3 of ADT-A01-01.hl7: ISO universal id → urn:oid (agrees with the peer)', () => {
    const db1 = sample('ADT-A01-01').segment('DB1')!;
    expect(cxToIdentifier(componentsOf(db1, 3), 'm1')).toEqual({
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] },
      system: 'urn:oid:1.3.6.1.4.1.44750.1.2.2',
      value: 'DB123',
      assigner: { display: 't' },
      period: { start: '1924-10-11', end: '1924-10-12' },
    });
  });

  it('PID-3 of ADT-A01-01.hl7: an HCD universal id is not a system (the peer uses ".../Identifier/HCD")', () => {
    const pid = sample('ADT-A01-01').segment('PID')!;
    expect(cxToIdentifier(componentsOf(pid, 3, 0), 'm1')!.system).toBe('urn:yilian:m1:id:test1');
    expect(cxToIdentifier(componentsOf(pid, 3, 1), 'm1')!.system).toBe('urn:yilian:m1:id:USSSA');
  });

  it('no CX-1 → undefined', () => {
    expect(cxToIdentifier(split('^^^RMYY^MR'), 'm1')).toBeUndefined();
    expect(cxToIdentifier([], 'm1')).toBeUndefined();
  });
});

describe('xadToAddress (XAD → Address)', () => {
  it('Chinese address with county → district, home use', () => {
    expect(xadToAddress(split('朝阳路100号^3单元^北京市^北京^100020^CHN^H^^110105&朝阳区'))).toEqual({
      use: 'home',
      line: ['朝阳路100号', '3单元'],
      city: '北京市',
      district: '朝阳区',
      state: '北京',
      postalCode: '100020',
      country: 'CHN',
    });
  });

  it('PID-11 of ADT-A01-01.hl7: M → type postal; SAD street name is an extension, not another line', () => {
    const pid = sample('ADT-A01-01').segment('PID')!;
    // peer: line ["1000","Hospital Lane","Ste. 123","Near Highway"], city "Ann Arbor " (untrimmed)
    expect(xadToAddress(componentsOf(pid, 11))).toEqual({
      type: 'postal',
      line: ['1000', 'Ste. 123'],
      _line: [{ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetName', valueString: 'Hospital Lane' }] }],
      city: 'Ann Arbor',
      district: 'W',
      state: 'MI',
      postalCode: '99999',
      country: 'USA',
      period: { start: '2000-01-10', end: '2000-01-20' },
    });
  });

  it('GT1-5 of ADT-A01-01.hl7 agrees with the peer', () => {
    const gt1 = sample('ADT-A01-01').segment('GT1')!;
    expect(xadToAddress(componentsOf(gt1, 5))).toEqual({ line: ['1619 SOUTH UNIVERSITY'], city: 'MADISON', state: 'WI', postalCode: '53703', country: 'US' });
  });

  it.each([
    ['B', { use: 'work' }],
    ['C', { use: 'temp' }],
    ['BI', { use: 'billing' }],
    ['BA', { use: 'old' }],
  ])('XAD-7 %s', (code, expected) => {
    expect(xadToAddress(split(`1 Main St^^City^^^^${code}`))).toMatchObject(expected);
  });

  it('only a type code → undefined', () => {
    expect(xadToAddress(split('^^^^^^H'))).toBeUndefined();
    expect(xadToAddress([])).toBeUndefined();
  });
});

describe('xtnToContactPoint (XTN → ContactPoint)', () => {
  it('v2.3 style: number in XTN-1', () => {
    expect(xtnToContactPoint(split('(555)555-5555^PRN^PH'))).toEqual({ system: 'phone', value: '(555)555-5555', use: 'home' });
    expect(xtnToContactPoint(split('13800138000'))).toEqual({ system: 'phone', value: '13800138000' });
  });

  it('v2.5+: country/area/local/extension composed; CP → mobile', () => {
    expect(xtnToContactPoint(split('^PRS^CP^^86^^13800138000'))).toEqual({ system: 'phone', value: '+86 13800138000', use: 'mobile' });
    expect(xtnToContactPoint(split('^WPN^PH^^86^10^12345678^123'))).toEqual({ system: 'phone', value: '+86 10 12345678 ext. 123', use: 'work' });
    expect(xtnToContactPoint(split('^^CP^^^^13800138000'))).toEqual({ system: 'phone', value: '13800138000', use: 'mobile' });
  });

  it('email from XTN-4, NET implies email', () => {
    expect(xtnToContactPoint(split('^NET^Internet^wei.zhang@example.cn'))).toEqual({ system: 'email', value: 'wei.zhang@example.cn' });
    expect(xtnToContactPoint(split('^NET^^a@b.cn'))).toEqual({ system: 'email', value: 'a@b.cn' });
  });

  it('NK1-5 of ADT-A01-01.hl7 agrees with the peer (value XTN-12, rank, period)', () => {
    const nk1 = sample('ADT-A01-01').segment('NK1')!;
    // expected/ADT-A01-01-expected.json RelatedPerson.telecom[0..2]
    expect(xtnToContactPoint(componentsOf(nk1, 5, 0))).toEqual({
      system: 'email',
      value: '5555',
      use: 'work',
      rank: 18,
      period: { start: '2001-01-10', end: '2002-01-10' },
    });
    expect(xtnToContactPoint(componentsOf(nk1, 5, 1))).toEqual({ system: 'phone', value: '121111', use: 'home' });
    expect(xtnToContactPoint(componentsOf(nk1, 6, 0))).toEqual({
      system: 'phone',
      value: '878777',
      use: 'home',
      rank: 18,
      period: { start: '2001-01-10', end: '2002-01-10' },
    });
    expect(xtnToContactPoint(componentsOf(nk1, 6, 1))).toEqual({ system: 'pager', value: '6666666' });
  });

  it('PID-14 TDD of ADT-A01-01.hl7 → system other (agrees with the peer)', () => {
    const pid = sample('ADT-A01-01').segment('PID')!;
    expect(xtnToContactPoint(componentsOf(pid, 14, 1))).toEqual({ system: 'other', value: '1111' });
  });

  it('no number → undefined', () => {
    expect(xtnToContactPoint(split('^PRN^PH'))).toBeUndefined();
    expect(xtnToContactPoint([])).toBeUndefined();
  });
});

describe('cweToCodeableConcept and codingSystemUri (CWE/CE/CNE)', () => {
  it.each([
    ['LN', 'http://loinc.org'],
    ['SCT', 'http://snomed.info/sct'],
    ['I10', 'http://hl7.org/fhir/sid/icd-10'],
    ['I9CDX', 'http://hl7.org/fhir/sid/icd-9-cm'],
    ['UCUM', 'http://unitsofmeasure.org'],
    ['CVX', 'http://hl7.org/fhir/sid/cvx'],
    ['HL70005', 'http://terminology.hl7.org/CodeSystem/v2-0005'],
    ['HL70078', 'http://terminology.hl7.org/CodeSystem/v2-0078'],
    ['L', 'urn:yilian:m1:L'],
    ['99zzz', 'urn:yilian:m1:99zzz'],
    ['XYZ LAB', 'urn:yilian:m1:XYZ%20LAB'],
    ['', 'urn:yilian:m1:local'],
  ])('%j → %s', (name, uri) => {
    expect(codingSystemUri(name, 'm1')).toBe(uri);
  });

  it('primary and alternate codings, versions, original text', () => {
    expect(cweToCodeableConcept(split('8867-4^heartrate^LN^HR^心率^L^2.68^v1^Heart rate'), 'm1')).toEqual({
      coding: [
        { system: 'http://loinc.org', version: '2.68', code: '8867-4', display: 'heartrate' },
        { system: 'urn:yilian:m1:L', version: 'v1', code: 'HR', display: '心率' },
      ],
      text: 'Heart rate',
    });
  });

  it('OBX-5 of ORU-R01-01.hl7: SNOMED coding with CWE-9 text (peer-equivalent coding)', () => {
    const obx = sample('ORU-R01-01').all('OBX').find((s) => s.value(2) === 'CWE')!;
    expect(cweToCodeableConcept(componentsOf(obx, 5), 'm1')).toEqual({
      coding: [{ system: 'http://snomed.info/sct', code: '27268008', display: 'Salmonella' }],
      text: 'Salmonella species',
    });
  });

  it('PID-10 of ADT-A01-01.hl7 (HL70005) → v2-0005', () => {
    const pid = sample('ADT-A01-01').segment('PID')!;
    expect(cweToCodeableConcept(componentsOf(pid, 10, 0), 'm1')).toEqual({
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0005', code: '2106-3', display: 'White' }],
      text: 'White',
    });
  });

  it('local code without system; CWE-14 OID; text only; empty', () => {
    expect(cweToCodeableConcept(split('SUR'), 'm1')).toEqual({ coding: [{ system: 'urn:yilian:m1:local', code: 'SUR' }] });
    expect(cweToCodeableConcept(split('A1^Alpha^^^^^^^^^^^^2.16.840.1.113883.6.1'), 'm1')!.coding![0]!.system).toBe('urn:oid:2.16.840.1.113883.6.1');
    expect(cweToCodeableConcept(split('^头痛'), 'm1')).toEqual({ text: '头痛' });
    expect(cweToCodeableConcept([], 'm1')).toBeUndefined();
    expect(cweToCodeableConcept(split('^^^^^'), 'm1')).toBeUndefined();
  });
});

describe('xcnToPractitioner (XCN)', () => {
  it('PV1-7 of ADT-A01-01.hl7', () => {
    const pv1 = sample('ADT-A01-01').segment('PV1')!;
    expect(xcnToPractitioner(componentsOf(pv1, 7), 'm1')).toEqual({
      identifier: { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'BR' }] }, system: 'urn:yilian:m1:id:PERSONNELt', value: '1122334' },
      // XCN-10 "B" (birth name) is unmapped by the IG's table 0200 map; XCN-21 "Al" is a professional suffix
      name: {
        text: 'Mohammed Mahi Alaz',
        family: 'Alaz',
        given: ['Mohammed', 'Mahi'],
        prefix: ['Dr.'],
        suffix: ['JR', 'MD', 'Al'],
        period: { start: '1924-10-10', end: '1924-10-15' },
      },
    });
  });

  it('Chinese practitioner with an ISO authority', () => {
    expect(xcnToPractitioner(split('D001^李^明^^^^主任医师^^RMYY&1.2.156.1&ISO^L^^^EI'), 'm1')).toEqual({
      identifier: { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'EI' }] }, system: 'urn:oid:1.2.156.1', value: 'D001' },
      name: { use: 'official', text: '李明', family: '李', given: ['明'], suffix: ['主任医师'] },
    });
  });

  it('empty → undefined', () => {
    expect(xcnToPractitioner([], 'm1')).toBeUndefined();
  });
});

describe('Quantity: NM + units, CQ, SN', () => {
  it('UCUM declared → system and code', () => {
    expect(nmToQuantity('5.6', split('mmol/L^millimole per liter^UCUM'))).toEqual({ value: 5.6, unit: 'millimole per liter', system: 'http://unitsofmeasure.org', code: 'mmol/L' });
    expect(nmToQuantity('-3', split('g/L^^L^g/L^^UCUM'))).toEqual({ value: -3, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' });
  });

  it('OBX-6 "beats/min^^ISO" of ADT-A01-01.hl7: no system (the peer claims urn:iso:std:iso:3986)', () => {
    const obx = sample('ADT-A01-01').segment('OBX')!;
    expect(nmToQuantity(obx.value(5, 0), componentsOf(obx, 6))).toEqual({ value: 60, unit: 'beats/min' });
    expect(nmToQuantity(obx.value(5, 1), componentsOf(obx, 6))).toEqual({ value: 120, unit: 'beats/min' });
  });

  it('not a number or empty → undefined', () => {
    expect(nmToQuantity('', undefined)).toBeUndefined();
    expect(nmToQuantity('1e3', undefined)).toBeUndefined();
    expect(nmToQuantity('abc', split('mg'))).toBeUndefined();
    expect(nmToQuantity('.5', undefined)).toEqual({ value: 0.5 });
  });

  it('CQ', () => {
    expect(cqToQuantity(split('150^lb&lb&ANSI+'))).toEqual({ value: 150, unit: 'lb' });
    expect(cqToQuantity(split('2^d&day&UCUM'))).toEqual({ value: 2, unit: 'day', system: 'http://unitsofmeasure.org', code: 'd' });
    expect(cqToQuantity([])).toBeUndefined();
  });

  it('SN', () => {
    const mg = split('mg/dL^^UCUM');
    expect(snToValue(split('>^100'), mg)).toEqual({ kind: 'quantity', quantity: { value: 100, comparator: '>', unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' } });
    expect(snToValue(split('<=^0.5'))).toEqual({ kind: 'quantity', quantity: { value: 0.5, comparator: '<=' } });
    expect(snToValue(split('=^7'))).toEqual({ kind: 'quantity', quantity: { value: 7 } });
    expect(snToValue(split('^3.5^-^5.1'))).toEqual({ kind: 'range', range: { low: { value: 3.5 }, high: { value: 5.1 } } });
    expect(snToValue(split('^1^:^128'))).toEqual({ kind: 'ratio', ratio: { numerator: { value: 1 }, denominator: { value: 128 } } });
    expect(snToValue(split('^1^/^2'))).toEqual({ kind: 'ratio', ratio: { numerator: { value: 1 }, denominator: { value: 2 } } });
    expect(snToValue(split('^2^+'))).toEqual({ kind: 'string', value: '2+' });
    expect(snToValue(split('<>^5'))).toEqual({ kind: 'string', value: '<>5' });
    expect(snToValue([])).toBeUndefined();
  });
});

describe('tables', () => {
  it('administrative gender (IG: A and N → other)', () => {
    expect(['M', 'F', 'O', 'U', 'A', 'N'].map((c) => administrativeGender[c])).toEqual(['male', 'female', 'other', 'unknown', 'other', 'other']);
    expect(administrativeGender['X']).toBeUndefined();
  });

  it('OBX-11 → Observation.status', () => {
    expect(['F', 'C', 'A', 'P', 'X', 'D', 'W', 'R', 'S', 'I'].map((c) => observationStatus[c])).toEqual([
      'final', 'corrected', 'amended', 'preliminary', 'cancelled', 'entered-in-error', 'entered-in-error', 'preliminary', 'preliminary', 'registered',
    ]);
    expect(observationStatus['N']).toBeUndefined();
  });

  it('OBR-25 → DiagnosticReport.status', () => {
    expect(['O', 'I', 'S', 'P', 'C', 'R', 'F', 'X'].map((c) => diagnosticReportStatus[c])).toEqual([
      'registered', 'registered', 'registered', 'preliminary', 'corrected', 'partial', 'final', 'cancelled',
    ]);
    expect(diagnosticReportStatus['Y']).toBeUndefined();
  });

  it('PV1-2 → Encounter.class (PV1-2 "P" of ADT-A01-01.hl7 → PRENC, as the peer)', () => {
    const pv1 = sample('ADT-A01-01').segment('PV1')!;
    expect(patientClass[pv1.value(2)]).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PRENC', display: 'pre-admission' });
    expect(patientClass['I']!.code).toBe('IMP');
    expect(patientClass['O']!.code).toBe('AMB');
    expect(patientClass['E']!.code).toBe('EMER');
    expect(patientClass['R']).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'R', display: 'Recurring patient' });
  });

  it('OBX-8 abnormal flags → interpretation', () => {
    const v3 = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
    expect(abnormalFlagToInterpretation(split('H'), 'm1')).toEqual({ coding: [{ system: v3, code: 'H' }] });
    expect(abnormalFlagToInterpretation(split('LL^Critical low^HL70078'), 'm1')).toEqual({ coding: [{ system: v3, code: 'LL' }], text: 'Critical low' });
    expect(abnormalFlagToInterpretation(split('A^A^HL70078^^^^2.5'), 'm1')).toEqual({ coding: [{ system: v3, code: 'A' }] });
    // ADT-A01-01.hl7 OBX-8 "A^A^HL7nnnn": not a 0078 system name → kept as the sender's local coding
    expect(abnormalFlagToInterpretation(split('A^A^HL7nnnn'), 'm1')).toEqual({ coding: [{ system: 'urn:yilian:m1:HL7nnnn', code: 'A', display: 'A' }], text: 'A' });
    expect(abnormalFlagToInterpretation([], 'm1')).toBeUndefined();
  });
});
