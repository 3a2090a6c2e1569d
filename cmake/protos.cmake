# Generates C++ (messages + gRPC services) for the project's protos and for
# google/rpc/{status,error_details}.proto, which Debian ships in
# golang-github-gogo-googleapis-dev (not vendored).
set(GOOGLEAPIS_DIR /usr/share/gocode/src/github.com/gogo/googleapis
    CACHE PATH "Directory holding google/rpc/*.proto")
set(PROTO_SRC_DIR ${CMAKE_SOURCE_DIR}/proto)
set(PROTO_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${PROTO_GEN_DIR})

get_target_property(GRPC_CPP_PLUGIN gRPC::grpc_cpp_plugin LOCATION)
set(PROTOC_BIN $<TARGET_FILE:protobuf::protoc>)

file(GLOB ASSISTANTS_PROTOS CONFIGURE_DEPENDS ${PROTO_SRC_DIR}/assistants/v1/*.proto)

set(PROTO_GEN_SRCS)
foreach(proto ${ASSISTANTS_PROTOS})
  file(RELATIVE_PATH rel ${PROTO_SRC_DIR} ${proto})
  string(REGEX REPLACE "\\.proto$" "" base ${rel})
  set(outs ${PROTO_GEN_DIR}/${base}.pb.cc ${PROTO_GEN_DIR}/${base}.pb.h
           ${PROTO_GEN_DIR}/${base}.grpc.pb.cc ${PROTO_GEN_DIR}/${base}.grpc.pb.h)
  add_custom_command(
    OUTPUT ${outs}
    COMMAND ${PROTOC_BIN} -I${PROTO_SRC_DIR} -I${Protobuf_INCLUDE_DIRS}
            --cpp_out=${PROTO_GEN_DIR} --grpc_out=${PROTO_GEN_DIR}
            --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${rel}
    WORKING_DIRECTORY ${PROTO_SRC_DIR}
    DEPENDS ${ASSISTANTS_PROTOS}
    COMMENT "protoc ${rel}")
  list(APPEND PROTO_GEN_SRCS ${PROTO_GEN_DIR}/${base}.pb.cc ${PROTO_GEN_DIR}/${base}.grpc.pb.cc)
endforeach()

foreach(base google/rpc/status google/rpc/error_details)
  add_custom_command(
    OUTPUT ${PROTO_GEN_DIR}/${base}.pb.cc ${PROTO_GEN_DIR}/${base}.pb.h
    COMMAND ${PROTOC_BIN} -I${GOOGLEAPIS_DIR} -I${Protobuf_INCLUDE_DIRS}
            --cpp_out=${PROTO_GEN_DIR} ${base}.proto
    DEPENDS ${GOOGLEAPIS_DIR}/${base}.proto
    COMMENT "protoc ${base}.proto")
  list(APPEND PROTO_GEN_SRCS ${PROTO_GEN_DIR}/${base}.pb.cc)
endforeach()

add_library(assistants_proto STATIC ${PROTO_GEN_SRCS})
target_include_directories(assistants_proto PUBLIC ${PROTO_GEN_DIR})
target_link_libraries(assistants_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
