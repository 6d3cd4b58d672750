// Command-line flags: "--name value", "-n value" and bare switches, with one-line errors.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace muse {

class Args {
 public:
  // `switches` are flags without a value; every other flag takes one.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& known,
       const std::set<std::string>& switches);
  bool has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  // Every value of a flag given more than once (get() returns the last).
  std::vector<std::string> get_all(const std::string& flag) const;
  std::string require(const std::string& flag) const;
  long long get_int(const std::string& flag, long long fallback) const;
  double get_double(const std::string& flag, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_;
};

// "1,2,3" -> ids; throws muse::Error on anything else.
std::vector<int> parse_int_list(const std::string& text, const std::string& flag);

}  // namespace muse
