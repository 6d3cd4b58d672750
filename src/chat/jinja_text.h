// Internal to the Jinja interpreter: Python's str operations on UTF-8 text. Python strings
// index by code point, so lengths, slices and find() positions count code points here too.
// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace muse::jinja::text {

// Invalid bytes decode to U+DC80..U+DCFF and encode back unchanged (Python's surrogateescape).
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);
void append_utf8(std::string& out, char32_t cp);
size_t length(std::string_view s);  // in code points
bool is_ascii(std::string_view s);

bool is_space(char32_t c);  // str.isspace()
bool is_alpha(char32_t c);
bool is_digit(char32_t c);
bool is_alnum(char32_t c);
bool is_lower(char32_t c);
bool is_upper(char32_t c);
char32_t to_lower(char32_t c);
char32_t to_upper(char32_t c);

std::string lower(std::string_view s);
std::string upper(std::string_view s);
std::string capitalize(std::string_view s);   // str.capitalize()
std::string py_title(std::string_view s);     // str.title()
std::string jinja_title(std::string_view s);  // the |title filter (splits at -, space, brackets)
std::string swapcase(std::string_view s);

// str.strip/lstrip/rstrip: `chars` absent means whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right);
// str.split/rsplit: no separator splits on whitespace runs; maxsplit < 0 means no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               int64_t maxsplit, bool from_right);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count);
// Code-point index of the first (or last) occurrence within [start, end), or -1.
int64_t find(std::string_view s, std::string_view sub, int64_t start, int64_t end, bool last);
int64_t count(std::string_view s, std::string_view sub, int64_t start, int64_t end);
// The positions a Python slice [start:stop:step] selects from len items (step != 0).
std::vector<int64_t> slice_positions(int64_t len, std::optional<int64_t> start,
                                     std::optional<int64_t> stop, int64_t step);
// Python slice semantics on code points (step != 0).
std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step);
// Code point i (negative from the end), or nothing when out of range.
std::optional<std::string> at(std::string_view s, int64_t i);
std::string html_escape(std::string_view s);
std::string center(std::string_view s, int64_t width, std::string_view fill);
std::string ljust(std::string_view s, int64_t width, std::string_view fill);
std::string rjust(std::string_view s, int64_t width, std::string_view fill);

// Python's int() and float() on text; nothing when Python would raise ValueError.
std::optional<int64_t> parse_int(std::string_view s, int base);
std::optional<double> parse_float(std::string_view s);

}  // namespace muse::jinja::text
