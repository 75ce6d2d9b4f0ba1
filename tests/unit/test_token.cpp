// Step secrets: random, well-formed, and compared correctly.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "token.hpp"

namespace sidecore {
namespace {

bool lowercase_hex(const std::string& text) {
  return text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST(Token, Is32LowercaseHexDigits) {
  for (int i = 0; i < 100; ++i) {
    const auto token = generate_token();
    EXPECT_EQ(token.size(), 32u) << token;
    EXPECT_TRUE(lowercase_hex(token)) << token;
  }
}

TEST(Token, CallsDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(generate_token());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_NE(generate_token(), generate_token());
}

TEST(Token, IdIs16LowercaseHexDigitsAndCallsDiffer) {
  const auto a = generate_id(), b = generate_id();
  EXPECT_EQ(a.size(), 16u);
  EXPECT_TRUE(lowercase_hex(a)) << a;
  EXPECT_NE(a, b);
}

TEST(Token, RandomValuesDiffer) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 100; ++i) seen.insert(random_u64());
  EXPECT_EQ(seen.size(), 100u);
}

TEST(TokensEqual, EqualTokens) {
  const auto token = generate_token();
  EXPECT_TRUE(tokens_equal(token, std::string(token)));
  EXPECT_TRUE(tokens_equal("", ""));
}

TEST(TokensEqual, DifferentTokens) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  for (size_t i = 0; i < token.size(); ++i) {
    std::string other = token;
    other[i] = other[i] == 'f' ? 'e' : 'f';
    EXPECT_FALSE(tokens_equal(token, other)) << "difference at " << i;
  }
  EXPECT_FALSE(tokens_equal(token, generate_token()));
}

TEST(TokensEqual, DifferentLengths) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  EXPECT_FALSE(tokens_equal(token, token.substr(0, 31)));  // a prefix is not the token
  EXPECT_FALSE(tokens_equal(token, token + "0"));
  EXPECT_FALSE(tokens_equal(token, ""));
  EXPECT_FALSE(tokens_equal("", token));
}

TEST(TokensEqual, ComparesEveryByteIncludingNul) {
  EXPECT_FALSE(tokens_equal(std::string_view("ab\0c", 4), std::string_view("ab\0d", 4)));
  EXPECT_TRUE(tokens_equal(std::string_view("ab\0c", 4), std::string_view("ab\0c", 4)));
}

}  // namespace
}  // namespace sidecore
