/**
 * A minimal ONNX model writer: just enough protobuf to build small f32 graphs in-process for the
 * peer benchmarks (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto with a
 * tensor type, OperatorSetIdProto). No initializers: every operand is a graph input, so the
 * benchmark can keep it on the device. Field numbers follow onnx/onnx.proto3.
 *
 * Protobuf wire format: each field is a varint key `(number << 3) | wireType`, then a varint
 * (wire type 0), 4 little-endian bytes (5), or a varint length and the bytes (2: strings,
 * nested messages, packed repeated scalars).
 */

/** An attribute value: an integer, a float, or a list of integers (the only kinds the peers need). */
export type OnnxAttribute = { int: number } | { float: number } | { ints: readonly number[] };

export interface OnnxNode {
  opType: string;
  /** Operator set domain; `''` is the default ONNX domain, `'com.microsoft'` holds contrib ops. */
  domain?: string;
  /** Input value names; `''` marks an omitted optional input. */
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, OnnxAttribute>>;
}

/** A graph input or output: an f32 tensor of fixed shape. */
export interface OnnxValue {
  name: string;
  dims: readonly number[];
}

export interface OnnxGraph {
  nodes: readonly OnnxNode[];
  inputs: readonly OnnxValue[];
  outputs: readonly OnnxValue[];
  /** Opset version per domain, e.g. `{ '': 17, 'com.microsoft': 1 }`. */
  opsets: Readonly<Record<string, number>>;
}

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;
/** `TensorProto.DataType.FLOAT`. */
const ELEM_FLOAT = 1;

/** Appends protobuf fields to a growing byte list. */
class Writer {
  private readonly bytes: number[] = [];

  /** A varint; negative int64 values take their 64-bit two's complement (10 bytes), as protobuf specifies. */
  private varint(value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`not an integer: ${value}`);
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number): this {
    this.key(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.bytes.push(...b);
    return this;
  }

  raw(field: number, data: Uint8Array): this {
    this.key(field, WIRE_BYTES);
    this.varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.raw(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: Writer) => void): this {
    const inner = new Writer();
    build(inner);
    return this.raw(field, inner.finish());
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, values: readonly number[]): this {
    const inner = new Writer();
    for (const v of values) inner.varint(v);
    return this.raw(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function writeAttribute(w: Writer, name: string, value: OnnxAttribute): void {
  w.string(1, name); // name
  if ('int' in value) {
    w.int(3, value.int).int(20, ATTR_INT); // i, type
  } else if ('float' in value) {
    w.float(2, value.float).int(20, ATTR_FLOAT); // f, type
  } else {
    w.packedInts(8, value.ints).int(20, ATTR_INTS); // ints, type
  }
}

function writeNode(w: Writer, node: OnnxNode, index: number): void {
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(3, `${node.opType}_${index}`); // name
  w.string(4, node.opType); // op_type
  for (const [name, value] of Object.entries(node.attributes ?? {})) {
    w.message(5, (a) => writeAttribute(a, name, value));
  }
  if (node.domain) w.string(7, node.domain);
}

function writeValueInfo(w: Writer, value: OnnxValue): void {
  w.string(1, value.name);
  w.message(2, (type) =>
    // TypeProto.tensor_type
    type.message(1, (tensor) => {
      tensor.int(1, ELEM_FLOAT); // elem_type
      tensor.message(2, (shape) => {
        for (const d of value.dims) shape.message(1, (dim) => dim.int(1, d)); // dim { dim_value }
      });
    }),
  );
}

/** Serialises a single-graph model (IR version 8) to ONNX protobuf bytes. */
export function encodeOnnxModel(graph: OnnxGraph): Uint8Array {
  const w = new Writer();
  w.int(1, 8); // ir_version
  w.string(2, 'mue-engine-bench'); // producer_name
  w.message(7, (g) => {
    graph.nodes.forEach((node, i) => g.message(1, (n) => writeNode(n, node, i)));
    g.string(2, 'bench'); // name
    for (const input of graph.inputs) g.message(11, (v) => writeValueInfo(v, input));
    for (const output of graph.outputs) g.message(12, (v) => writeValueInfo(v, output));
  });
  for (const [domain, version] of Object.entries(graph.opsets)) {
    w.message(8, (o) => {
      if (domain) o.string(1, domain);
      o.int(2, version);
    });
  }
  return w.finish();
}
