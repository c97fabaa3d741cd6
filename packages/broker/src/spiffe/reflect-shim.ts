/**
 * @peculiar/x509 loads tsyringe, which throws at import time unless `Reflect.getMetadata`
 * exists (it expects the `reflect-metadata` polyfill). @peculiar/x509 registers its providers
 * without decorators, so the metadata is never read; this installs the three functions tsyringe
 * touches, backed by a WeakMap, only when no polyfill is present. Import this module before
 * '@peculiar/x509'.
 */
type MetadataFns = {
  getMetadata?: unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

const reflect = Reflect as unknown as MetadataFns;
if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<unknown, unknown>>();
  const own = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  reflect.getOwnMetadata = own;
  reflect.defineMetadata = (key: unknown, value: unknown, target: object): void => {
    let m = store.get(target);
    if (m === undefined) store.set(target, (m = new Map()));
    m.set(key, value);
  };
  reflect.getMetadata = (key: unknown, target: object): unknown => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const v = own(key, t);
      if (v !== undefined) return v;
    }
    return undefined;
  };
}

export {};
