// Declarations only: see gloo/rendezvous/store.h.
#pragma once
#include <gloo/rendezvous/store.h>
