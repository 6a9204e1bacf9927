import { create, type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

function withDependencies(files: Iterable<DescFile>, into = new Map<string, DescFile>()) {
  for (const file of files) {
    if (into.has(file.name)) continue;
    into.set(file.name, file);
    withDependencies(file.dependencies, into);
  }
  return into;
}

/**
 * Server reflection (v1 and v1alpha) for the given services, so grpcurl-style
 * clients can list and call them. Built from the descriptors protobuf-es embeds
 * in the generated code: no .proto files are read at run time.
 */
export function addReflection(server: grpc.Server, services: readonly DescService[]): void {
  const files = withDependencies(services.map((s) => s.file));
  // Dependencies first, as descriptor sets expect.
  const ordered = [...files.values()].reverse();
  const set = create(FileDescriptorSetSchema, { file: ordered.map((f) => f.proto) });
  const definition = loadFileDescriptorSetFromBuffer(
    Buffer.from(toBinary(FileDescriptorSetSchema, set)),
  );
  new ReflectionService(definition).addToServer(server);
}
