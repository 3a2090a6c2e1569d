// Decoding of the gateway's rich gRPC errors for people: the status code,
// the ErrorInfo reason and each BadRequest field violation, so an operator
// sees why a call failed, not only its code.
#ifndef CLI_RPC_ERROR_H_
#define CLI_RPC_ERROR_H_

#include <grpcpp/grpcpp.h>

#include <string>

namespace assistants {
namespace cli {

// "UNIMPLEMENTED", "NOT_FOUND", ...
const char* CodeName(grpc::StatusCode code);

// "error: CODE REASON: message\n" followed by one "  field F: D\n" line per
// BadRequest violation carried in grpc-status-details-bin. A server that
// sends no details (or a transport failure, which never has any) still gets
// the code and message.
std::string DescribeRpcError(const grpc::Status& status);

}  // namespace cli
}  // namespace assistants

#endif  // CLI_RPC_ERROR_H_
