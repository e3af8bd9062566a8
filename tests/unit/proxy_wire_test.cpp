// wire::Frame::consume: what a partial non-blocking write leaves must be
// exactly the bytes not yet written, at every split point.
#include <gtest/gtest.h>

#include <string>

#include "server/wire.hpp"

using namespace keygate;

namespace {
std::string bytes_of(const wire::Frame& f) {
  std::string out;
  for (const auto& b : f.buffers()) out.append(static_cast<const char*>(b.data()), b.size());
  return out;
}
}  // namespace

TEST(WireFrame, ConsumeLeavesExactlyTheUnwrittenBytes) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string data = "0123456789abcdefghij";
  wire::Frame whole;
  whole.head(head);
  whole.data(data.data(), data.size(), true);
  whole.last_chunk();
  const std::string all = bytes_of(whole);
  ASSERT_EQ(all, head + "14\r\n" + data + "\r\n0\r\n\r\n");
  for (size_t n = 0; n <= all.size(); ++n) {
    wire::Frame f;
    f.head(head);
    f.data(data.data(), data.size(), true);
    f.last_chunk();
    f.consume(n);
    EXPECT_EQ(bytes_of(f), all.substr(n)) << "after " << n << " bytes";
    EXPECT_EQ(f.empty(), n == all.size());
  }
}

TEST(WireFrame, ConsumeInSteps) {
  const std::string head = "head", body = "body-bytes";
  wire::Frame f;
  f.head(head);
  f.data(body.data(), body.size(), false);
  std::string written;
  for (size_t step : {1u, 2u, 3u, 5u, 3u}) {
    const std::string rest = bytes_of(f);
    written += rest.substr(0, step);
    f.consume(step);
  }
  EXPECT_EQ(written, head + body);
  EXPECT_TRUE(f.empty());
}
