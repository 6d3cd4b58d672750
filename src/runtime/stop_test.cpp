#include "runtime/stop.h"

#include <gtest/gtest.h>

namespace muse {
namespace {

using Reason = StopMatcher::Reason;

// Feeds the deltas and returns what was shown, with "|" where a stop ended it.
std::string stream(StopMatcher& m, const std::vector<std::string>& deltas) {
  std::string shown;
  for (const std::string& d : deltas) {
    const StopMatcher::Result r = m.feed(d);
    shown += r.text;
    if (r.reason != Reason::kNone) return shown + "|";
  }
  return shown + m.flush();
}

TEST(StopTest, StopStringSplitAcrossDeltas) {
  StopMatcher m({"</answer>", "\n\nUser:"});
  EXPECT_EQ(m.feed("The result is 4.</an").text, "The result is 4.");
  const StopMatcher::Result r = m.feed("swer> trailing");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.reason, Reason::kStopString);
  EXPECT_EQ(r.stop, "</answer>");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.feed("more").text, "");
}

TEST(StopTest, HeldTextIsReleasedWhenItStopsLookingLikeAStop) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.feed("a ST").text, "a ");
  EXPECT_EQ(m.feed("O").text, "");
  EXPECT_EQ(m.feed("P!").text + "|", "|");  // matched
  StopMatcher n({"STOP"});
  EXPECT_EQ(n.feed("a ST").text, "a ");
  EXPECT_EQ(n.feed("OOP").text, "STOOP");
  EXPECT_EQ(n.flush(), "");
}

TEST(StopTest, CharacterByCharacterGivesTheSameText) {
  const std::string text = "one <|im_end|> two";
  for (const auto& stops :
       std::vector<std::vector<std::string>>{{"<|im_end|>"}, {"two", "<|im"}, {"zzz"}}) {
    StopMatcher whole(stops), chars(stops);
    std::vector<std::string> pieces;
    for (char c : text) pieces.push_back(std::string(1, c));
    EXPECT_EQ(stream(whole, {text}), stream(chars, pieces));
  }
  StopMatcher m({"<|im_end|>"});
  std::vector<std::string> pieces;
  for (char c : text) pieces.push_back(std::string(1, c));
  EXPECT_EQ(stream(m, pieces), "one |");
}

TEST(StopTest, EarliestStopWinsAndOverlapsAreFound) {
  StopMatcher m({"bc", "abcd"});
  EXPECT_EQ(stream(m, {"xab", "cd"}), "x|");  // "abcd" starts before "bc"
  StopMatcher overlap({"aab"});
  EXPECT_EQ(stream(overlap, {"a", "a", "a", "b"}), "a|");
}

TEST(StopTest, IncompleteUtf8IsHeldBack) {
  StopMatcher m({});
  EXPECT_EQ(m.feed("caf\xC3").text, "caf");
  EXPECT_EQ(m.feed("\xA9 \xE6\x97").text, "\xC3\xA9 ");
  EXPECT_EQ(m.feed("\xA5").text, "\xE6\x97\xA5");
  EXPECT_EQ(m.feed("\xF0\x9F\x98").text, "");
  EXPECT_EQ(m.flush(), "\xF0\x9F\x98");
}

TEST(StopTest, EndOfGenerationTokens) {
  StopMatcher m({"###"}, {2, 7});
  EXPECT_TRUE(m.is_end_of_generation(7));
  EXPECT_FALSE(m.is_end_of_generation(3));
  EXPECT_EQ(m.feed_token(5, "x #").text, "x ");
  const StopMatcher::Result r = m.feed_token(7, "<|eot_id|>");
  EXPECT_EQ(r.text, "#");
  EXPECT_EQ(r.reason, Reason::kEndOfGeneration);
  EXPECT_TRUE(m.stopped());
  m.reset();
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.feed_token(5, "ok").text, "ok");
}

TEST(StopTest, EmptyStopStringsAreIgnored) {
  StopMatcher m({"", "end"});
  EXPECT_EQ(stream(m, {"the end"}), "the |");
}

}  // namespace
}  // namespace muse
