"""duewise notify: the one service that talks to the outside world."""
