/** Jest runs the TypeScript sources through SWC (fast, no type check); `tsc` checks types separately. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/api', '<rootDir>/adapters', '<rootDir>/pipeline', '<rootDir>/mappings', '<rootDir>/hub', '<rootDir>/cli', '<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  // ESM-only dependencies (fhir-kit-client, hl7v2) must be transformed too.
  transformIgnorePatterns: [],
  // fhir-kit-client 2.x exports only an `import` condition, which jest's CommonJS resolver does not match.
  moduleNameMapper: { '^fhir-kit-client$': '<rootDir>/node_modules/fhir-kit-client/dist/index.js' },
  testTimeout: 180000,
};
