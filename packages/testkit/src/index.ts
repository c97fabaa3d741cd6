/** @trustplane/testkit — shared fixtures for the TrustPlane packages' tests (private). */
export * from './fixtures.js';
export * from './services.js';
export * from './conformance.js';
export * from './differential.js';
export * from './stacks.js';
export * from './property.js';
