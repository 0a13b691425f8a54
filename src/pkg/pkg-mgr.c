/* pkg-mgr.c: what pkg-mgr.h declares and does not define inline: the
 * tests' hook into the store's locking (pkg_test_point()). Its own file,
 * beside its header: defined in one of the files that call it, the header
 * would reach up into that file and tie the package manager's files in a
 * circle. */
#include "pkg-mgr.h"

void (*pkg_test_hook)(PkgTestPoint point, void *userdata) = NULL;
void *pkg_test_hook_userdata = NULL;
