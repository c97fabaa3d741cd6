/** @trustplane/issuer — issuer keys with rotation, published as JWKS with OpenID discovery (docs/issuer.md). */
export * from './keyring.js';
export * from './server.js';
