# Tests of the fake OpenAI server: the model logic as unit tests, and the
# real fake-openai binary driven over HTTP. Included from
# tests/upstream/CMakeLists.txt.
assistants_test(fake_openai_test SOURCES fake_openai_test.cc scenario_test.cc ../../upstream/fake/scenario.cc LIBS test_support CURL::libcurl nlohmann_json::nlohmann_json absl::strings)
add_dependencies(fake_openai_test fake-openai)
