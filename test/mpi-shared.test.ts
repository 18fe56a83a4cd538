/** Identity keys of shared resources: two members reporting the same device or expert are shown once. */
import { sharedKey } from '../hub/api/fhirShared';

test('a device with the same serial number from two members has one key; member-local ids do not merge', () => {
  const ct = (member: string, id: string) => ({ resource_type: 'Device', member_id: member, content: { id, serialNumber: 'ct-7781 ', identifier: [{ system: `urn:yilian:${member}:device`, value: id }] } });
  expect(sharedKey(ct('m1', 'a'))).toBe(sharedKey(ct('m2', 'b')));
  const local = (member: string) => ({ resource_type: 'Device', member_id: member, content: { identifier: [{ system: `urn:yilian:${member}:device`, value: 'CT1' }], deviceName: [{ name: 'CT' }] } });
  expect(sharedKey(local('m1'))).not.toBe(sharedKey(local('m2')));
});

test('a practitioner with the same national number is one person across members; names alone stay per member', () => {
  const doc = (member: string, name: string) => ({ resource_type: 'Practitioner', member_id: member, content: { identifier: [{ system: 'urn:oid:2.16.156.10011.1.4', value: '110330000012345' }], name: [{ text: name }] } });
  expect(sharedKey(doc('lead', '王建国'))).toBe(sharedKey(doc('community-3', '王建國')));
  const byName = (member: string) => ({ resource_type: 'Practitioner', member_id: member, content: { name: [{ text: '張偉' }] } });
  expect(sharedKey(byName('m1'))).toBe(sharedKey({ ...byName('m1'), content: { name: [{ text: '张伟' }] } }));
  expect(sharedKey(byName('m1'))).not.toBe(sharedKey(byName('m2')));
});
