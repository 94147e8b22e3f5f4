// Creates a sync and reads it back over gRPC, loading the service from proto/ at run time.
// Usage: node client.js TARGET TOKEN STREAM_ID PROTO_DIR GOOGLEAPIS_DIR
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, token, streamId, protoDir, googleapisDir] = process.argv.slice(2);
const definition = protoLoader.loadSync("headwater/v1/sync.proto", {
  includeDirs: [protoDir, googleapisDir],
  keepCase: true,
  defaults: false,
});
const { SyncService } = grpc.loadPackageDefinition(definition).headwater.v1;
const client = new SyncService(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${token}`);

const sync = {
  provider: "stripe",
  stream_id: streamId,
  name: "From Node",
  collection_ids: ["stripe:customer"],
  credential: {
    properties: {
      fields: {
        kind: { stringValue: "stripe_api_key" },
        secret: { stringValue: "sk_test_node" },
      },
    },
  },
};

client.CreateSync({ sync }, metadata, (err, created) => {
  if (err) {
    console.error("CreateSync failed:", err.code, err.details);
    process.exit(1);
  }
  client.GetSync({ id: created.sync.id }, metadata, (err2, read) => {
    if (err2) {
      console.error("GetSync failed:", err2.code, err2.details);
      process.exit(1);
    }
    console.log(JSON.stringify({ created: created.sync.id, read: read.sync.id, name: read.sync.name,
      secret: read.sync.credential.properties.fields.secret.stringValue }));
    client.close();
  });
});
