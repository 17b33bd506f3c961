// Classifies one image over gRPC and over the HTTP gateway's proto3 JSON with
// the client that buf generates from proto/classify/v1/classify.proto.
//
//   node dist/example.js <grpc-host:port> <http-base-url> <image-path> [topK]
//
// prints one JSON document: {"grpc": [...], "http": [...], "model": {...}}.
import { readFile } from "node:fs/promises";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ClassifierService,
  ClassifyRequestSchema,
  ClassifyResponseSchema,
  type ClassifyRequest,
  type ClassifyResponse,
} from "./gen/classify/v1/classify_pb.js";

const TIMEOUT_MS = 30_000;

interface PredictionOut {
  label: string;
  probability: number;
  classIndex: number;
}

/** gRPC (HTTP/2 without TLS, gRPC protocol) through the generated service client. */
async function classifyOverGrpc(address: string, request: ClassifyRequest): Promise<ClassifyResponse> {
  const transport = createGrpcTransport({ baseUrl: `http://${address}` });
  const client = createClient(ClassifierService, transport);
  return client.classify(request, { timeoutMs: TIMEOUT_MS });
}

/** POST /v1/classify on the gateway, the bodies typed by the generated schemas. */
async function classifyOverHttp(baseUrl: string, request: ClassifyRequest): Promise<ClassifyResponse> {
  const response = await fetch(new URL("/v1/classify", baseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(toJson(ClassifyRequestSchema, request)),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (!response.ok) {
    throw new Error(`POST /v1/classify: HTTP ${response.status}: ${await response.text()}`);
  }
  // Fields a newer server may add are skipped, as the gRPC transport does.
  const body = (await response.json()) as JsonValue;
  return fromJson(ClassifyResponseSchema, body, { ignoreUnknownFields: true });
}

function predictions(response: ClassifyResponse): PredictionOut[] {
  return response.predictions.map(({ label, probability, classIndex }) => ({ label, probability, classIndex }));
}

async function main(argv: readonly string[]): Promise<void> {
  const [address, baseUrl, imagePath, topKArg = "5"] = argv;
  const topK = Number(topKArg);
  if (address === undefined || baseUrl === undefined || imagePath === undefined || !Number.isInteger(topK)) {
    throw new Error("usage: example <grpc-host:port> <http-base-url> <image-path> [topK]");
  }
  const request = create(ClassifyRequestSchema, { image: await readFile(imagePath), topK });
  const grpc = await classifyOverGrpc(address, request);
  const http = await classifyOverHttp(baseUrl, request);
  const out = {
    grpc: predictions(grpc),
    http: predictions(http),
    model: { grpc: grpc.model, http: http.model },
    modelVersion: { grpc: grpc.modelVersion, http: http.modelVersion },
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
