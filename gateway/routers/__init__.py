"""HTTP routers: parse, call one service, render. No logic of their own."""
