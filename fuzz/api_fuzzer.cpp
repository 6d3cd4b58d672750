// libFuzzer target for the server's request parsing: any body is JSON-parsed and read as a chat
// and as a completions request; each either yields settings or raises muse::Error (ApiError for
// the client's mistakes), and a response_format schema compiles to a grammar that parses.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/grammar.h"
#include "server/api.h"
#include "util/error.h"
#include "util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muse::Json body;
  try {
    body = muse::Json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const muse::Error&) {
    return 0;
  }
  const muse::ServerLimits limits;
  try {
    const muse::ChatParams p = muse::parse_chat_params(body, limits);
    if (!p.grammar.empty()) muse::Grammar::parse(p.grammar);  // what the schema compiled to must parse
  } catch (const muse::Error&) {
  }
  try {
    muse::parse_completion_params(body, limits);
  } catch (const muse::Error&) {
  }
  return 0;
}
