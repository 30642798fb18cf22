import { initializeTransactionalContext, StorageDriver } from 'typeorm-transactional';
import { typeormTransactionalSuite } from './typeorm-transactional-suite.js';

// typeorm-transactional on Node's AsyncLocalStorage (its `AUTO` choice on Node 16 and later).
initializeTransactionalContext({ storageDriver: StorageDriver.ASYNC_LOCAL_STORAGE });

typeormTransactionalSuite('AsyncLocalStorage');
