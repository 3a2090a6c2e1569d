# Tests of the curl-multi HTTP client against a local libevent test server.
# Included from tests/upstream/CMakeLists.txt.

# pkg_check_modules(IMPORTED_TARGET) targets are directory-scoped: the one
# upstream/CMakeLists.txt creates is not visible from tests/, so define it
# here unless it was made GLOBAL.
if(NOT TARGET PkgConfig::LIBEVENT)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(LIBEVENT REQUIRED IMPORTED_TARGET libevent)
endif()

assistants_test(curl_http_client_test SOURCES curl_http_client_test.cc test_http_server.cc LIBS upstream_http PkgConfig::LIBEVENT)
