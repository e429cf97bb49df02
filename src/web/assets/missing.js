// A page that does not exist: the header still says who is signed in.
'use strict';

sc.start(async () => {});
