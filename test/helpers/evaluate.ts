/** Running one op expression on a backend and reading its result, freeing everything it made. */
import type { Backend } from '../../src/backend/backend.js';
import type { HostArray, Tensor } from '../../src/tensor.js';

export async function evaluate(backend: Backend, op: (b: Backend) => Tensor): Promise<HostArray> {
  const result = backend.tidy(() => op(backend));
  try {
    return await result.read();
  } finally {
    result.dispose();
  }
}
