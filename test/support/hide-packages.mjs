// Preloaded (node --import) by tests of a missing package: loading any package named in
// HIDE_PACKAGES (comma-separated) with require() fails as it does when the package is not
// installed (require() is what TypeORM loads database drivers with).
import Module from 'node:module';
import process from 'node:process';

const hidden = new Set((process.env.HIDE_PACKAGES ?? '').split(',').filter(Boolean));
const load = Module._load;
Module._load = function (request, ...rest) {
  // By name, or by the path into node_modules some loaders fall back to (TypeORM's).
  const name = String(request).replace(/^.*[\\/]node_modules[\\/]/, '');
  if (hidden.has(name)) {
    const error = new Error(`Cannot find module '${request}'`);
    error.code = 'MODULE_NOT_FOUND';
    throw error;
  }
  return load.call(this, request, ...rest);
};
