/**
 * `tidy` scopes shared by the backends: every tensor created inside a scope is freed when the
 * scope ends, except those reachable from its result, which move to the enclosing scope.
 */
import { Tensor } from '../tensor.js';

function collectTensors(value: unknown, into: Set<Tensor>): void {
  const add = (v: unknown): void => {
    if (v instanceof Tensor) into.add(v.owner ?? v);
  };
  if (Array.isArray(value)) value.forEach(add);
  else if (value instanceof Tensor) add(value);
  else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) {
      if (Array.isArray(v)) v.forEach(add);
      else add(v);
    }
  }
}

export class TensorScopes {
  readonly #stack: Set<Tensor>[] = [];

  /** Registers a newly created tensor with the innermost scope, if any. */
  track(t: Tensor): void {
    this.#stack[this.#stack.length - 1]?.add(t);
  }

  run<T>(fn: () => T): T {
    const scope = new Set<Tensor>();
    this.#stack.push(scope);
    let result: T;
    try {
      result = fn();
    } catch (error) {
      this.#stack.pop();
      for (const t of scope) t.dispose();
      throw error;
    }
    this.#stack.pop();
    const kept = new Set<Tensor>();
    collectTensors(result, kept);
    for (const t of scope) {
      if (kept.has(t)) this.track(t);
      else t.dispose();
    }
    return result;
  }
}
