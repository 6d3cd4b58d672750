// `muse chat`: a conversation in the terminal. Replies stream as they are generated; reasoning
// shows dimmed while the model thinks and collapses to one line when the answer starts
// (/expand shows it again). History stays within the context window: the oldest turns are
// dropped, and the user is told, when the next prompt would not fit.
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "chat/chat_engine.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

volatile sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

constexpr const char* kHelp =
    "commands:\n"
    "  /think on|off   let the model reason first (templates that support it)\n"
    "  /expand         show the last reply's reasoning\n"
    "  /system TEXT    set the system prompt (empty TEXT clears it)\n"
    "  /stats          speeds, tokens and context use\n"
    "  /save FILE      write the conversation as JSON\n"
    "  /load FILE      read a conversation written by /save\n"
    "  /reset          start over (keeps the system prompt)\n"
    "  /exit           leave (also Ctrl-D)\n"
    "end a line with \\ to continue the message on the next line; Ctrl-C stops a reply\n";

// Writes to the terminal and remembers how many screen rows the text took, so a block (the
// reasoning) can be erased again.
class Terminal {
 public:
  explicit Terminal(bool color) : color_(color) {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) width_ = ws.ws_col;
  }
  bool color() const { return color_; }
  void dim(bool on) {
    if (color_) std::fputs(on ? "\x1b[2m" : "\x1b[0m", stdout);
  }
  void write(std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    for (unsigned char c : text) {
      if (c == '\n') {
        ++rows_, column_ = 0;
      } else if ((c & 0xC0) != 0x80) {  // one column per character (wide ones are rare here)
        if (++column_ > width_) ++rows_, column_ = 1;
      }
    }
  }
  void start_block() { rows_ = 0, column_ = 0; }
  // Erases everything written since start_block().
  void erase_block() {
    if (rows_ > 0) std::printf("\x1b[%dF", rows_);
    else std::fputs("\r", stdout);
    std::fputs("\x1b[J", stdout);
    rows_ = 0, column_ = 0;
  }
  bool at_line_start() const { return column_ == 0; }

 private:
  bool color_;
  int width_ = 80;
  int rows_ = 0, column_ = 0;
};

struct Totals {
  int turns = 0;
  long generated = 0, reasoning = 0;
  GenerationResult last;
  int last_reasoning = 0;
};

class ChatApp {
 public:
  ChatApp(ChatEngine& engine, const GenerationRequest& generation, bool interactive, bool color)
      : engine_(engine), generation_(generation), interactive_(interactive), term_(color) {}

  void set_system(std::string text) { system_ = std::move(text); }
  void set_thinking(bool on) { thinking_ = on; }
  void set_thinking_budget(int tokens) { thinking_budget_ = tokens; }

  int run() {
    if (interactive_)
      std::printf("type a message, /help for commands, Ctrl-D to leave\n");
    std::string line;
    while (true) {
      if (interactive_) std::fputs(term_.color() ? "\x1b[1m> \x1b[0m" : "> ", stdout);
      std::fflush(stdout);
      std::string message;
      bool more = true;
      while (more) {
        if (!std::getline(std::cin, line)) {
          if (interactive_) std::printf("\n");
          return 0;
        }
        more = !line.empty() && line.back() == '\\';
        if (more) line.pop_back(), line += '\n';
        message += line;
        if (more && interactive_) std::fputs(". ", stdout), std::fflush(stdout);
      }
      if (message.empty()) continue;
      if (message[0] == '/') {
        if (!command(message)) return 0;
        continue;
      }
      turn(message);
    }
  }

 private:
  Json conversation() const {
    Json::Array all;
    if (!system_.empty()) all.push_back(Json(Json::Object{{"role", Json("system")}, {"content", Json(system_)}}));
    for (const Json& m : history_) all.push_back(m);
    return Json(std::move(all));
  }

  // Drops the oldest turns until prompt plus reply fit the context; false when even the newest
  // message alone does not.
  bool fit_history(ChatRequest& request) {
    int dropped = 0;
    while (true) {
      request.messages = conversation();
      const int need = int(engine_.prompt_tokens(engine_.render(request)).size());
      const int budget = engine_.n_ctx() - std::min(generation_.max_tokens, engine_.n_ctx() / 2);
      if (need <= budget) break;
      if (history_.size() <= 1) {
        std::printf("(that message is %d tokens: too long for the context of %d tokens)\n", need, engine_.n_ctx());
        history_.clear();
        return false;
      }
      // Drop through the first user message after the oldest one, so the history still
      // starts with a user turn.
      size_t cut = 1;
      while (cut < history_.size() - 1 && history_[cut].at("role").as_string() != "user") ++cut;
      history_.erase(history_.begin(), history_.begin() + long(cut));
      dropped += int(cut);
    }
    if (dropped)
      std::printf("(history trimmed: dropped the %d oldest message%s to fit the context of %d tokens)\n",
                  dropped, dropped == 1 ? "" : "s", engine_.n_ctx());
    return true;
  }

  void turn(const std::string& message) {
    history_.push_back(Json(Json::Object{{"role", Json("user")}, {"content", Json(message)}}));
    ChatRequest request;
    request.enable_thinking = thinking_;
    request.thinking_budget = thinking_budget_;
    request.generation = generation_;
    if (!fit_history(request)) return;

    g_interrupted = 0;
    turn_start_ = Clock::now();
    bool in_reasoning = false, shown_reasoning = false;
    term_.start_block();
    ChatReply reply = engine_.reply(request, [&](const OutputDelta& d) {
      if (!d.reasoning.empty()) {
        if (!in_reasoning) {
          in_reasoning = shown_reasoning = true;
          term_.start_block();
          term_.dim(true);
          if (interactive_) term_.write("thinking: ");
        }
        if (interactive_) term_.write(d.reasoning);
      }
      if (!d.content.empty() || !d.tool_calls.empty()) {
        if (in_reasoning) end_reasoning();
        in_reasoning = false;
        term_.write(d.content);
        for (const ToolCall& c : d.tool_calls) {
          term_.dim(true);
          term_.write("\n[tool call " + c.name + " " + c.arguments + "]\n");
          term_.dim(false);
        }
      }
      return !g_interrupted;
    });
    if (in_reasoning) end_reasoning();
    if (!term_.at_line_start()) term_.write("\n");
    if (!shown_reasoning && !reply.reasoning.empty() && interactive_) summary_line();
    history_.push_back(reply.message());
    last_reasoning_ = reply.reasoning;
    totals_.turns++;
    totals_.generated += long(reply.generation.tokens.size());
    totals_.reasoning += reply.reasoning_tokens;
    totals_.last = reply.generation;
    totals_.last_reasoning = reply.reasoning_tokens;
    const GenerationResult& g = reply.generation;
    char stats[256];
    std::snprintf(stats, sizeof stats, "[prompt %d tokens (%d cached) at %.1f tok/s · reply %zu tokens at %.1f tok/s%s%s]\n",
                  g.prompt_tokens, g.reused_tokens, g.prompt_rate(), g.tokens.size(), g.decode_rate(),
                  g.finish == FinishReason::kCancelled ? " · stopped" : "",
                  g.finish == FinishReason::kLength ? " · hit the -n limit" : "");
    term_.dim(true);
    term_.write(stats);
    term_.dim(false);
  }

  // The reasoning block is done: collapse it to one line on a terminal.
  void end_reasoning() {
    if (!interactive_) return;
    term_.dim(false);
    term_.erase_block();
    summary_line();
  }
  void summary_line() {
    char line[96];
    std::snprintf(line, sizeof line, "▸ thought for %.1f s (/expand to show)\n", seconds_since(turn_start_));
    term_.dim(true);
    term_.write(line);
    term_.dim(false);
    term_.start_block();
  }

  // Returns false to leave.
  bool command(const std::string& line) {
    const size_t space = line.find(' ');
    const std::string name = line.substr(0, space);
    const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
    if (name == "/exit" || name == "/quit") return false;
    if (name == "/help") {
      std::fputs(kHelp, stdout);
    } else if (name == "/reset") {
      history_.clear();
      engine_.reset();
      std::printf("(conversation cleared)\n");
    } else if (name == "/think") {
      if (arg != "on" && arg != "off") {
        std::printf("usage: /think on|off (now %s)\n", thinking_ ? "on" : "off");
      } else {
        thinking_ = arg == "on";
        std::printf("(thinking %s)\n", thinking_ ? "on" : "off");
      }
    } else if (name == "/expand") {
      if (last_reasoning_.empty()) {
        std::printf("(the last reply has no reasoning)\n");
      } else {
        term_.dim(true);
        term_.write(last_reasoning_ + "\n");
        term_.dim(false);
      }
    } else if (name == "/system") {
      system_ = arg;
      std::printf(arg.empty() ? "(system prompt cleared)\n" : "(system prompt set)\n");
    } else if (name == "/stats") {
      const GenerationResult& g = totals_.last;
      std::printf("turns %d, messages %zu, context %d of %d tokens cached\n", totals_.turns, history_.size(),
                  engine_.cached_tokens(), engine_.n_ctx());
      std::printf("generated %ld tokens, %ld of them reasoning\n", totals_.generated, totals_.reasoning);
      if (totals_.turns)
        std::printf("last reply: prompt %d tokens (%d cached) at %.1f tok/s, %zu tokens at %.1f tok/s, %d reasoning, finish: %s\n",
                    g.prompt_tokens, g.reused_tokens, g.prompt_rate(), g.tokens.size(), g.decode_rate(),
                    totals_.last_reasoning, finish_reason_name(g.finish));
    } else if (name == "/save") {
      if (arg.empty()) {
        std::printf("usage: /save FILE\n");
        return true;
      }
      const Json doc(Json::Object{{"system", Json(system_)}, {"thinking", Json(thinking_)},
                                  {"messages", Json(history_)}});
      std::ofstream f(arg, std::ios::binary);
      f << doc.dump() << "\n";
      if (f) std::printf("(saved %zu messages to %s)\n", history_.size(), arg.c_str());
      else std::printf("(could not write %s)\n", arg.c_str());
    } else if (name == "/load") {
      try {
        const Json doc = Json::parse(read_text_file(arg));
        Json::Array messages = doc.at("messages").as_array();
        for (const Json& m : messages)
          if (!m.is_object() || !m.at("role").is_string()) fail("every message needs a role");
        history_ = std::move(messages);
        if (const Json* s = doc.find("system")) system_ = s->as_string();
        if (const Json* t = doc.find("thinking")) thinking_ = t->as_bool();
        engine_.reset();
        std::printf("(loaded %zu messages from %s)\n", history_.size(), arg.c_str());
      } catch (const Error& e) {
        std::printf("(cannot load %s: %s)\n", arg.c_str(), e.what());
      }
    } else {
      std::printf("unknown command %s (/help lists them)\n", name.c_str());
    }
    return true;
  }

  ChatEngine& engine_;
  GenerationRequest generation_;
  bool interactive_;
  Terminal term_;
  std::string system_;
  bool thinking_ = true;
  int thinking_budget_ = -1;  // compact thinking: at most this many thinking tokens per reply
  Json::Array history_;
  std::string last_reasoning_;
  Totals totals_;
  Clock::time_point turn_start_;
};

}  // namespace

int cmd_chat(const Argv& argv) {
  std::set<std::string> known = generation_flags();
  known.insert({"-m", "-s", "--system", "-t", "-c", "--think", "--think-budget"});
  const Args a(argv, known, {"--no-color"});
  const auto model = Model::load(model_path(a));
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  const auto chat_template = ChatTemplate::from_gguf(model->file());
  const GenerationRequest generation = generation_from_args(a, 1024);
  ThreadPool pool(thread_count(a));
  SessionParams params;
  params.n_ctx = int(a.get_int("-c", std::min(model->config().n_ctx_train, 8192)));
  if (params.n_ctx < 64 || params.n_ctx > model->config().n_ctx_train)
    fail("-c must be between 64 and the model's context of ", model->config().n_ctx_train);
  Session session(*model, pool, params);
  ChatEngine engine(*tokenizer, *chat_template, session);
  const bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  ChatApp app(engine, generation, interactive, interactive && !a.has("--no-color") && !std::getenv("NO_COLOR"));
  app.set_system(a.get("-s", a.get("--system")));
  const std::string think = a.get("--think", "on");
  if (think != "on" && think != "off") fail("--think must be on or off");
  app.set_thinking(think == "on");
  const long long budget = a.get_int("--think-budget", -1);
  if (budget < -1 || budget > (1 << 24)) fail("--think-budget must be a number of tokens");
  app.set_thinking_budget(int(budget));
  if (interactive)
    std::printf("muse chat: %s, context %d tokens, %s chat template\n", model->config().arch_name.c_str(),
                params.n_ctx, chat_template->is_default() ? "default (ChatML)" : "the model's");
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, nullptr);
  return app.run();
}

}  // namespace muse
