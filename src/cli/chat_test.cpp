// `muse chat` driven through a pseudo-terminal, as a person would use it: messages, slash
// commands, streaming replies with speeds, history saved and loaded.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "testing/test_support.h"
#include "util/json.h"

namespace muse {
namespace {

// The chat's prompt on a terminal (bold "> "): model text cannot contain the escape codes.
const std::string kPrompt = "\x1b[1m> \x1b[0m";

// A child process on a pseudo-terminal: write lines, read until some text shows up.
class Pty {
 public:
  explicit Pty(const std::vector<std::string>& argv) {
    winsize ws{};
    ws.ws_col = 100;
    ws.ws_row = 40;
    pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Pty() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0; }
  void send(const std::string& line) {
    const std::string text = line + "\n";
    ASSERT_EQ(write(fd_, text.data(), text.size()), ssize_t(text.size()));
  }
  // Reads until `marker` appears after the previous marker; returns the text up to and
  // including it (or all that came if it never did).
  std::string read_until(const std::string& marker, int seconds = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    size_t hit;
    while ((hit = out_.find(marker, consumed_)) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      out_.append(buf, size_t(n));
    }
    const size_t end = hit == std::string::npos ? out_.size() : hit + marker.size();
    std::string text = out_.substr(consumed_, end - consumed_);
    consumed_ = end;
    return text;
  }
  int wait_exit() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
  size_t consumed_ = 0;
};

TEST(ChatPty, ScriptedSession) {
  const std::string model = testing::temp_path("chat.gguf");
  const std::string synth = std::string(MUSE_BINARY) +
                            " synth --arch qwen3 --dims embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,"
                            "vocab=600,ctx=512 --type q8_0 -o " + model + " 2>/dev/null";
  ASSERT_EQ(std::system(synth.c_str()), 0);
  Pty chat({MUSE_BINARY, "chat", "-m", model, "-n", "12", "-c", "256", "-t", "1", "--seed", "7",
            "-s", "You are terse."});
  ASSERT_TRUE(chat.started());
  std::string out = chat.read_until(kPrompt);
  EXPECT_NE(out.find("muse chat:"), std::string::npos) << out;

  chat.send("Hello there, who are you?");
  out = chat.read_until("tok/s");
  EXPECT_NE(out.find("[prompt "), std::string::npos) << out;
  out += chat.read_until(kPrompt);

  chat.send("/stats");
  out = chat.read_until(kPrompt);
  EXPECT_NE(out.find("turns 1, messages 2"), std::string::npos) << out;

  // A second turn reuses the cached history.
  chat.send("And again?");
  out = chat.read_until("tok/s");
  const size_t cached = out.find(" cached)");
  ASSERT_NE(cached, std::string::npos) << out;
  EXPECT_EQ(out.find("(0 cached)"), std::string::npos) << out;
  chat.read_until(kPrompt);

  const std::string saved = testing::temp_path("conversation.json");
  chat.send("/save " + saved);
  out = chat.read_until(kPrompt);
  EXPECT_NE(out.find("saved 4 messages"), std::string::npos) << out;
  const Json doc = Json::parse(testing::read_file(saved));
  EXPECT_EQ(doc.at("messages").size(), 4u);
  EXPECT_EQ(doc.at("system").as_string(), "You are terse.");

  chat.send("/think off");
  EXPECT_NE(chat.read_until(kPrompt).find("thinking off"), std::string::npos);
  chat.send("/reset");
  EXPECT_NE(chat.read_until(kPrompt).find("conversation cleared"), std::string::npos);
  chat.send("/load " + saved);
  EXPECT_NE(chat.read_until(kPrompt).find("loaded 4 messages"), std::string::npos);
  chat.send("/bogus");
  EXPECT_NE(chat.read_until(kPrompt).find("unknown command"), std::string::npos);
  chat.send("/exit");
  EXPECT_EQ(chat.wait_exit(), 0);
  std::remove(saved.c_str());
  std::remove(model.c_str());
}

// A small context fills up: the oldest turns are dropped and the user is told.
TEST(ChatPty, TrimsHistoryToTheContext) {
  const std::string model = testing::temp_path("chat-small.gguf");
  const std::string synth = std::string(MUSE_BINARY) +
                            " synth --arch qwen3 --dims embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,"
                            "vocab=600,ctx=512 --type q8_0 -o " + model + " 2>/dev/null";
  ASSERT_EQ(std::system(synth.c_str()), 0);
  Pty chat({MUSE_BINARY, "chat", "-m", model, "-n", "16", "-c", "128", "-t", "1"});
  ASSERT_TRUE(chat.started());
  chat.read_until(kPrompt);
  std::string all;
  for (int i = 0; i < 6; ++i) {
    chat.send("Please tell me a long story about the number " + std::to_string(i) + " and its friends.");
    all += chat.read_until(kPrompt);
  }
  EXPECT_NE(all.find("history trimmed"), std::string::npos) << all;
  chat.send("/exit");
  EXPECT_EQ(chat.wait_exit(), 0);
  std::remove(model.c_str());
}

}  // namespace
}  // namespace muse
