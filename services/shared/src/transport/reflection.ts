/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl, buf curl and
 * Postman can list, describe and call every method without .proto files.
 *
 * Answered from the descriptors protobuf-es embeds in the generated code, as the
 * FileDescriptorProtos protoc made: names fully qualified and every file's `dependency`
 * list intact. (@grpc/reflection rebuilds descriptors through protobufjs and loses the
 * dependency list, so clients cannot resolve a type from another file: grpc-node#3034.)
 */
import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  type Registry,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import {
  type ServerReflectionRequest,
  ServerReflectionResponseSchema,
  ServerReflection as ServerReflectionV1,
} from "../../../gen/grpc/reflection/v1/reflection_pb.ts";
import {
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
  ServerReflection as ServerReflectionV1alpha,
} from "../../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { grpcServiceDefinition } from "./grpc-codec.ts";

/** grpc.StatusCode values used in error responses (the reflection protocol carries them as ints). */
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/** The reflection services themselves: both versions answer the same way. */
export const REFLECTION_SERVICES = [ServerReflectionV1, ServerReflectionV1alpha] as const;

/** The files of `services` and everything they import, each once, dependencies first. */
function filesOf(services: readonly DescService[]): DescFile[] {
  const out = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (out.has(file.name)) return;
    for (const dep of file.dependencies) visit(dep);
    out.set(file.name, file);
  };
  for (const s of services) visit(s.file);
  return [...out.values()];
}

type Answer = ReturnType<ReflectionIndex["answer"]>;

/** What reflection knows about one server: its services and their files. Pure and synchronous. */
export class ReflectionIndex {
  private readonly files: DescFile[];
  private readonly byName: Map<string, DescFile>;
  private readonly registry: Registry;
  private readonly encoded = new Map<string, Uint8Array>();
  readonly serviceNames: string[];

  constructor(services: readonly DescService[]) {
    const all = [...services, ...REFLECTION_SERVICES];
    this.files = filesOf(all);
    this.byName = new Map(this.files.map((f) => [f.name, f]));
    this.registry = createRegistry(...this.files);
    this.serviceNames = [...new Set(all.map((s) => s.typeName))].sort();
  }

  /** The response fields (shared by v1 and v1alpha) for one request. */
  answer(req: Pick<ServerReflectionRequest, "host" | "messageRequest">) {
    const m = req.messageRequest;
    switch (m.case) {
      case "listServices":
        return {
          case: "listServicesResponse" as const,
          value: { service: this.serviceNames.map((name) => ({ name })) },
        };
      case "fileByFilename": {
        const file = this.byName.get(m.value);
        return file
          ? this.withDependencies(file)
          : this.error(NOT_FOUND, `file not found: ${m.value}`);
      }
      case "fileContainingSymbol": {
        const file = this.fileOfSymbol(m.value);
        return file
          ? this.withDependencies(file)
          : this.error(NOT_FOUND, `symbol not found: ${m.value}`);
      }
      case "fileContainingExtension":
        return this.error(NOT_FOUND, "this server defines no extensions");
      case "allExtensionNumbersOfType":
        return this.registry.getMessage(m.value)
          ? {
              case: "allExtensionNumbersResponse" as const,
              value: { baseTypeName: m.value, extensionNumber: [] },
            }
          : this.error(NOT_FOUND, `type not found: ${m.value}`);
      default:
        return this.error(UNIMPLEMENTED, "unknown reflection request");
    }
  }

  /** A file is found by any type, service, method, field or enum value it declares. */
  private fileOfSymbol(symbol: string): DescFile | undefined {
    const name = symbol.replace(/^\./, "");
    const direct = this.registry.get(name);
    if (direct) return direct.file;
    // "pkg.Service.Method" or "pkg.Message.field": look up the parent.
    const dot = name.lastIndexOf(".");
    if (dot < 0) return undefined;
    const parent = this.registry.get(name.slice(0, dot));
    const member = name.slice(dot + 1);
    if (parent?.kind === "service" && parent.methods.some((x) => x.name === member))
      return parent.file;
    if (parent?.kind === "message" && parent.fields.some((x) => x.name === member))
      return parent.file;
    return undefined;
  }

  /** The file first, then everything it imports (clients still ask by name for what they lack). */
  private withDependencies(file: DescFile) {
    return {
      case: "fileDescriptorResponse" as const,
      value: { fileDescriptorProto: this.closure(file).map((f) => this.bytes(f)) },
    };
  }

  private closure(file: DescFile): DescFile[] {
    const out = new Map<string, DescFile>([[file.name, file]]);
    const visit = (f: DescFile) => {
      for (const dep of f.dependencies) {
        if (out.has(dep.name)) continue;
        out.set(dep.name, dep);
        visit(dep);
      }
    };
    visit(file);
    return [...out.values()];
  }

  private bytes(file: DescFile): Uint8Array {
    let b = this.encoded.get(file.name);
    if (!b) {
      b = toBinary(FileDescriptorProtoSchema, file.proto);
      this.encoded.set(file.name, b);
    }
    return b;
  }

  private error(code: number, message: string) {
    return {
      case: "errorResponse" as const,
      value: { errorCode: code, errorMessage: message },
    };
  }
}

function respondV1(index: ReflectionIndex, req: ServerReflectionRequest) {
  return create(ServerReflectionResponseSchema, {
    validHost: req.host,
    originalRequest: req,
    messageResponse: index.answer(req) as Answer,
  });
}

function respondV1alpha(index: ReflectionIndex, req: ServerReflectionRequest) {
  // v1alpha's messages have the same fields and numbers as v1's.
  return create(ServerReflectionResponseSchemaV1alpha, {
    validHost: req.host,
    originalRequest: req as never,
    messageResponse: index.answer(req) as never,
  });
}

/** Reflection on a grpc-js server (the internal services). */
export function addReflection(server: grpc.Server, services: readonly DescService[]): void {
  const index = new ReflectionIndex(services);
  const bidi =
    (respond: (index: ReflectionIndex, req: ServerReflectionRequest) => unknown) =>
    (call: grpc.ServerDuplexStream<ServerReflectionRequest, unknown>) => {
      call.on("data", (req: ServerReflectionRequest) => call.write(respond(index, req)));
      call.on("end", () => call.end());
      call.on("error", () => call.end());
    };
  server.addService(grpcServiceDefinition(ServerReflectionV1), {
    serverReflectionInfo: bidi(respondV1),
  });
  server.addService(grpcServiceDefinition(ServerReflectionV1alpha), {
    serverReflectionInfo: bidi(respondV1alpha),
  });
}

/** Reflection on a connect router (the gateway's h2c port: gRPC and gRPC-Web clients). */
export function routeReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const index = new ReflectionIndex(services);
  router.service(ServerReflectionV1, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield respondV1(index, req);
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield respondV1alpha(index, req as never);
    },
  });
}
