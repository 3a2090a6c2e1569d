// The gateway's server-side connection settings, in one place so the
// benchmark's echo baseline (bench/echo_server.cc) is built exactly alike.
#ifndef SERVICE_API_CHANNEL_ARGS_H_
#define SERVICE_API_CHANNEL_ARGS_H_

#include <grpcpp/server_builder.h>

namespace assistants {

// Keep idle connections (long RunEvents streams) alive through proxies, and
// recycle connections so load spreads after a scale-out.
inline void AddGatewayChannelArguments(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, 30 * 60 * 1000);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                              5 * 60 * 1000);
}

}  // namespace assistants

#endif  // SERVICE_API_CHANNEL_ARGS_H_
