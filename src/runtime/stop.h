// Stop conditions for streamed generation: stop strings found across decoded text deltas, and
// end-of-generation tokens.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace muse {

class StopMatcher {
 public:
  enum class Reason { kNone, kStopString, kEndOfGeneration };
  struct Result {
    std::string text;               // safe to show now
    Reason reason = Reason::kNone;  // set once generation should stop; feed nothing more
    std::string stop;               // the stop string that matched
  };

  // Empty stop strings are ignored.
  explicit StopMatcher(std::vector<std::string> stop_strings, std::vector<int32_t> eog_ids = {});

  // Takes the next piece of decoded text. Text is held back while it could be the start of a stop
  // string or ends inside a UTF-8 sequence; when a stop string matches, the result carries the
  // text before it and the stop string itself is dropped.
  Result feed(std::string_view delta);
  // A generated token and its decoded text: an end-of-generation token releases the held text
  // and stops (its own text is not shown).
  Result feed_token(int32_t token, std::string_view piece);
  // The held-back text once generation ended for another reason (length limit).
  std::string flush();

  bool stopped() const { return reason_ != Reason::kNone; }
  bool is_end_of_generation(int32_t token) const;
  void reset();

 private:
  std::vector<std::string> stops_;
  std::vector<int32_t> eog_ids_;
  std::string held_;
  Reason reason_ = Reason::kNone;
};

}  // namespace muse
