import { initializeTransactionalContext } from 'typeorm-transactional';
import { typeormTransactionalSuite } from './typeorm-transactional-suite.js';

// typeorm-transactional as its NestJS example starts it: the default storage (cls-hooked).
initializeTransactionalContext();

typeormTransactionalSuite('cls-hooked');
