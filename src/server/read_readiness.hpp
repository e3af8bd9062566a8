#pragma once
// What the reactor already knows about a socket's read side, as nginx keeps
// it in rev->ready: whether epoll has reported it readable since a read last
// drained it.
//
// Asio's epoll reactor tries a read (recv) as soon as an operation starts
// unless it has marked the socket "not worth trying" (try_speculative_), and
// it marks that only at EOF. On a keep-alive connection the next request is
// rarely there when the response has just gone out, so every request paid a
// recv that returned EAGAIN (and the upstream side another, when the response
// was not back yet). Here a read that returned less than it asked for marks
// the socket drained; edge-triggered epoll reports any later arrival, and the
// reactor then sets the mark back (epoll_reactor::descriptor_state::perform_io).
//
// Sound only when nothing can have consumed an edge between the recv that
// drained the socket and the mark: a recv made here, or a read operation the
// reactor completed inline (the first operation of its perform_io, which is
// the read when no write or except operation is pending on that socket). The
// callers below read one operation at a time on such sockets; the tunnel,
// which reads and writes the same socket at once, does not use this.
//
// The mark is a private member of Asio's reactor, reached through the
// explicit-instantiation rule (access checks do not apply to the names in an
// explicit instantiation). Only for the Asio this was read against (Boost
// 1.81, Debian 12) and its epoll reactor; elsewhere every read is tried, as
// before.
#include <boost/version.hpp>

#include "server/asio.hpp"

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define KEYGATE_KNOWS_READ_READINESS 1
#include <boost/asio/detail/epoll_reactor.hpp>
#else
#define KEYGATE_KNOWS_READ_READINESS 0
#endif

namespace keygate::detail {

#if KEYGATE_KNOWS_READ_READINESS
template <class Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type member_of(Tag) { return Member; }
};

using Reactor = boost::asio::detail::epoll_reactor;
using BasicTcpSocket = boost::asio::basic_socket<net::tcp, net::asio::any_io_executor>;

struct SocketImplTag {
  using type =
      boost::asio::detail::io_object_impl<boost::asio::detail::reactive_socket_service<net::tcp>,
                                          net::asio::any_io_executor>
          BasicTcpSocket::*;
  friend type member_of(SocketImplTag);
};
template struct Expose<SocketImplTag, &BasicTcpSocket::impl_>;

struct TrySpeculativeTag {
  using type = bool (Reactor::descriptor_state::*)[Reactor::max_ops];
  friend type member_of(TrySpeculativeTag);
};
template struct Expose<TrySpeculativeTag, &Reactor::descriptor_state::try_speculative_>;

inline bool* read_mark(net::tcp::socket& s) {
  BasicTcpSocket& base = s;
  Reactor::descriptor_state* d =
      (base.*member_of(SocketImplTag{})).get_implementation().reactor_data_;
  return d ? &(d->*member_of(TrySpeculativeTag{}))[Reactor::read_op] : nullptr;
}

// Whether epoll reported the socket readable since it was last drained (or
// nothing is known): a read is worth trying.
inline bool may_be_readable(net::tcp::socket& s) {
  bool* m = read_mark(s);
  return !m || *m;
}
inline void mark_drained(net::tcp::socket& s) {
  if (bool* m = read_mark(s)) *m = false;
}
#else
inline bool may_be_readable(net::tcp::socket&) {
  return true;
}
inline void mark_drained(net::tcp::socket&) {}
#endif

}  // namespace keygate::detail
